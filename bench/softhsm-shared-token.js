// SoftHSM2's file store under several processes: PROCESSES processes each initialize the module,
// look for the token by label, log in and finalize, ROUNDS times, on one fresh token directory.
// SoftHSM 2.6 rewrites token.object at every C_Login, and a process initializing meanwhile can
// miss the token; this counts the misses, and whether a look without / after a reinitialization
// finds it (docs/high-availability.md, "One SoftHSM2 token directory, several processes").
// usage: node bench/softhsm-shared-token.js [PROCESSES=4] [ROUNDS=150]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const [processes = 4, rounds = 150] = process.argv.slice(2).map(Number);

if (process.env.SHARED_TOKEN_CHILD) {
  const pkcs11js = createRequire(import.meta.url)('pkcs11js');
  const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const p = new pkcs11js.PKCS11();
  p.load(MODULE);
  const find = () => p.C_GetSlotList(true).filter((s) => {
    try { return p.C_GetTokenInfo(s).label.trim() === 'shared'; } catch { return false; }
  });
  const r = { missed: 0, foundWithoutReinit: 0, foundAfterReinit: 0, neverFound: 0 };
  for (let i = 0; i < rounds; i++) {
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    let slots = find();
    if (slots.length === 0) {
      r.missed++;
      for (let k = 0; k < 3 && !slots.length; k++) { sleep(50); slots = find(); }
      if (slots.length) r.foundWithoutReinit++;
      else {
        for (let k = 0; k < 5 && !slots.length; k++) { sleep(50); p.C_Finalize(); p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK }); slots = find(); }
        if (slots.length) r.foundAfterReinit++; else r.neverFound++;
      }
    }
    if (slots.length) {
      const s = p.C_OpenSession(slots[0], pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
      try { p.C_Login(s, pkcs11js.CKU_USER, '1234'); } catch { /* already logged in */ }
      p.C_CloseSession(s);
    }
    p.C_Finalize();
  }
  console.log(JSON.stringify({ pid: process.pid, rounds, ...r }));
} else {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-shared-token-'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${dir}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', 'shared', '--pin', '1234', '--so-pin', '5678'], { env, stdio: 'ignore' });
  const children = Array.from({ length: processes }, () =>
    new Promise((resolve) => spawn(process.execPath, [process.argv[1], String(processes), String(rounds)], { env: { ...env, SHARED_TOKEN_CHILD: '1' }, stdio: 'inherit' }).on('exit', resolve)));
  await Promise.all(children);
  rmSync(dir, { recursive: true, force: true });
}
