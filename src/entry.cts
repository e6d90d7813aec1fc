#!/usr/bin/env node
// CommonJS on purpose: CJS loading is synchronous, so UV_THREADPOOL_SIZE is set before libuv
// starts its threadpool (the ESM loader reads files on that pool). pkcs11js runs token calls
// there, so it must have room for every session in the pool plus fs/crypto work.
const sessions = Number(process.env.P11KMS_MAX_SESSIONS) || 8;
process.env.UV_THREADPOOL_SIZE ??= String(sessions + 4);
// The `p11kms` command (src/cli/main.ts): `serve` runs the daemon, other subcommands exit with their code.
void import('./cli/main.js').then(({ runCli, stdio }) =>
  runCli(process.argv.slice(2), process.env, stdio).then(
    (code) => {
      if (code !== 'serving') process.exit(code);
    },
    (e: unknown) => {
      process.stderr.write(`p11kms: ${(e as Error).message}\n`);
      process.exit(1);
    },
  ),
);
