// The emulated HSM driven directly, without the daemon: N threads (worker_threads), each with its
// own session, each looping C_EncryptInit + C_Encrypt (AES-256-GCM, 32 B) through the emulator
// for SECONDS. What the machine lets the emulated HSM deliver at that pool size: the control the
// daemon's HSM rows are compared with (nominal capacity, sessions ÷ latency, ignores scheduling).
// usage: P11EMU_CONFIG=… node bench/hsm-direct.mjs MODULE TOKEN_LABEL PIN_FILE THREADS SECONDS
import { readFileSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import pkcs11js from 'pkcs11js';

function open(module, label, pin) {
  const p = new pkcs11js.PKCS11();
  p.load(module);
  try {
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (e.code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
  }
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === label);
  const s = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
  try {
    p.C_Login(s, pkcs11js.CKU_USER, pin);
  } catch (e) {
    if (e.code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw e;
  }
  return { p, s };
}

if (isMainThread) {
  const [module, label, pinFile, threads = '8', seconds = '5'] = process.argv.slice(2);
  const pin = readFileSync(pinFile, 'utf8').trim();
  const { p, s } = open(module, label, pin);
  const key = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
  ]);
  // Every thread opens its session first; then all start together for the same window.
  const workers = Array.from({ length: Number(threads) }, () => new Worker(new URL(import.meta.url), { workerData: { module, label, pin, key } }));
  await Promise.all(workers.map((w) => new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  })));
  const end = Date.now() + Number(seconds) * 1000;
  const counts = await Promise.all(workers.map((w) => new Promise((resolve) => {
    w.once('message', resolve);
    w.postMessage(end);
  })));
  const ops = counts.reduce((a, b) => a + b, 0);
  process.stdout.write(`${JSON.stringify({ threads: Number(threads), ops, rps: ops / Number(seconds) })}\n`);
  process.exit(0);
} else {
  const { module, label, pin, key } = workerData;
  const { p, s } = open(module, label, pin);
  const data = Buffer.alloc(32);
  const out = Buffer.alloc(48);
  const iv = Buffer.alloc(12);
  const end = await new Promise((resolve) => {
    parentPort.once('message', resolve);
    parentPort.postMessage('ready');
  });
  let n = 0;
  while (Date.now() < end) {
    iv.writeUInt32BE(n, 0);
    p.C_EncryptInit(s, { mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_AES_GCM_v240, iv, ivBits: 96, tagBits: 128 } }, key);
    p.C_Encrypt(s, data, out);
    n++;
  }
  parentPort.postMessage(n);
}
