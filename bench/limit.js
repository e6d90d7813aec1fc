// The token's own limit: AES-256-GCM encryption of 32 bytes with AAD, straight through pkcs11js
// (synchronous C_EncryptInit + C_Encrypt on one session, one thread), against the same SoftHSM2
// token the daemon uses. Prints one JSON line: ops/s and per-operation latency percentiles.
// usage: node bench/limit.js MODULE TOKEN_LABEL PIN_FILE SECONDS AAD_BYTES
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pkcs11js from 'pkcs11js';

const [module, label, pinFile, seconds = '10', aadBytes = '45'] = process.argv.slice(2);
const p = new pkcs11js.PKCS11();
p.load(module);
p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === label);
const s = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
try {
  p.C_Login(s, pkcs11js.CKU_USER, readFileSync(pinFile, 'utf8').trim());
} catch (e) {
  if (e.code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw e;
}
// A key like the daemon's: a token object, sensitive, non-extractable AES-256 (SoftHSM2 is
// markedly faster with session objects, which the daemon does not use; LIMIT_SESSION_KEY=1 shows it).
const key = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
  { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
  { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
  { type: pkcs11js.CKA_TOKEN, value: process.env.LIMIT_SESSION_KEY ? false : true },
  { type: pkcs11js.CKA_PRIVATE, value: true },
  { type: pkcs11js.CKA_SENSITIVE, value: true },
  { type: pkcs11js.CKA_EXTRACTABLE, value: false },
  { type: pkcs11js.CKA_ENCRYPT, value: true },
  { type: pkcs11js.CKA_DECRYPT, value: true },
]);
const plaintext = randomFillSync(Buffer.alloc(32));
const aad = randomFillSync(Buffer.alloc(Number(aadBytes)));
const iv = Buffer.alloc(12);
const out = Buffer.alloc(48);

function once() {
  randomFillSync(iv);
  p.C_EncryptInit(
    s,
    { mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv, aad, ivBits: 96, tagBits: 128 } },
    key,
  );
  p.C_Encrypt(s, plaintext, out);
}

// Warm-up, then measure.
const warmEnd = Date.now() + 1000;
while (Date.now() < warmEnd) once();
const latencies = new Float64Array(4_000_000);
let n = 0;
const end = Date.now() + Number(seconds) * 1000;
const t0 = process.hrtime.bigint();
while (Date.now() < end && n < latencies.length) {
  const a = process.hrtime.bigint();
  once();
  latencies[n++] = Number(process.hrtime.bigint() - a) / 1e6;
}
const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
const sorted = latencies.subarray(0, n).sort();
const pct = (q) => sorted[Math.min(n - 1, Math.floor(q * n))];
p.C_DestroyObject(s, key);
p.C_Logout(s);
p.C_CloseSession(s);
p.C_Finalize();
process.stdout.write(`${JSON.stringify({ ops: n, seconds: elapsed, rps: n / elapsed, p50: pct(0.5), p99: pct(0.99) })}\n`);
