// CommonJS on purpose: CJS loading is synchronous, so UV_THREADPOOL_SIZE is set before libuv
// starts its threadpool (the ESM loader reads files on that pool). pkcs11js runs token calls
// there, so it must have room for every session in the pool plus fs/crypto work.
const sessions = Number(process.env.P11KMS_MAX_SESSIONS) || 8;
process.env.UV_THREADPOOL_SIZE ??= String(sessions + 4);
void import('./main.js');
