// CommonJS on purpose: CJS loading is synchronous, so UV_THREADPOOL_SIZE is set before libuv
// starts its threadpool (the ESM loader reads files on that pool). pkcs11js runs token calls
// there, so it must have room for every session in the pool plus fs/crypto work.
const sessions = Number(process.env.P11KMS_MAX_SESSIONS) || 8;
process.env.UV_THREADPOOL_SIZE ??= String(sessions + 4);
// `p11kms audit verify …` is the audit command line; anything else starts the daemon.
void (process.argv[2] === 'audit' ? import('./cli/audit.js') : import('./main.js'));
