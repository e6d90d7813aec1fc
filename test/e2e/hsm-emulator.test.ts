// The HSM emulator itself (test/emulator): each vendor behaviour it claims, checked through
// pkcs11js against a real SoftHSM2 token underneath, with AES keys of known value so every
// ciphertext is also checked with Node's own AES-GCM. The daemon is not involved here.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEmulator, type Emulator, type EmulatorOptions } from '../helpers/emulator.js';
import { createTempToken, type TempToken } from '../helpers/softhsm.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const CKM_CLOUDHSM_AES_GCM = 0x80001087;
const CKM_CLOUDKMS_AES_GCM = 0x8001e101;
const CKM_AES_KEY_WRAP_KWP = 0x210b;

let token: TempToken;
let em: Emulator;
let p: pkcs11js.PKCS11;
let slot: Buffer;
const key = randomBytes(32);
const aad = Buffer.from('context');

/** The vendor preset's lines plus test options, applied live (the emulator re-reads its file). */
function vendor(name: string, extra: EmulatorOptions = {}): void {
  const preset = readFileSync(resolve(import.meta.dirname, `../emulator/vendors/${name}.conf`), 'utf8');
  const opts: EmulatorOptions = {};
  for (const line of preset.split('\n')) {
    const m = /^([a-z_]+)=(.*)$/.exec(line.trim());
    if (m) opts[m[1]!] = m[2]!;
  }
  em.set({ ...opts, ...extra });
}

function session(pin = token.userPin): Buffer {
  const s = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
  try {
    p.C_Login(s, pkcs11js.CKU_USER, pin);
  } catch (e) {
    if ((e as { code?: number }).code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw e;
  }
  return s;
}

/** An AES key object whose value the test knows (session object, so nothing lingers). */
function knownKey(s: Buffer): Buffer {
  return p.C_CreateObject(s, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_VALUE, value: key },
    { type: pkcs11js.CKA_ENCRYPT, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: true },
    { type: pkcs11js.CKA_WRAP, value: true },
    { type: pkcs11js.CKA_UNWRAP, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
  ]);
}

const gcm = (mechanism: number, iv: Buffer, ivBits = iv.length * 8) => ({
  mechanism,
  parameter: { type: pkcs11js.CK_PARAMS_AES_GCM_v240, iv, aad, ivBits, tagBits: 128 },
});

function nodeDecrypt(iv: Buffer, ctAndTag: Buffer): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, iv);
  d.setAAD(aad);
  d.setAuthTag(ctAndTag.subarray(-16));
  return Buffer.concat([d.update(ctAndTag.subarray(0, -16)), d.final()]);
}

function nodeEncrypt(iv: Buffer, pt: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

/** The CKR a call failed with ('ok' when it succeeded; a non-PKCS#11 error is rethrown). */
const ckr = (f: () => unknown): number | 'ok' => {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (typeof (e as { code?: unknown }).code !== 'number') throw e;
    return (e as { code: number }).code;
  }
};

beforeAll(() => {
  token = createTempToken('p11emu-test');
  em = createEmulator(token.dir);
  p = new pkcs11js.PKCS11();
  p.load(em.module);
  p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === token.label)!;
});
afterAll(() => {
  p?.C_Finalize();
  token?.cleanup();
});
beforeEach(() => {
  em.set({});
  p.C_CloseAllSessions(slot); // each test counts its own sessions
});

describe('AES-GCM IV modes', () => {
  const pt = Buffer.from('sixteen byte msg and more');

  it('zero-buffer (CloudHSM, nShield): refuses a non-zero IV, writes its own 12-byte IV into pIv at C_Encrypt', () => {
    vendor('nshield');
    const s = session();
    const k = knownKey(s);
    expect(ckr(() => p.C_EncryptInit(s, gcm(pkcs11js.CKM_AES_GCM, Buffer.alloc(12, 1)), k))).toBe(pkcs11js.CKR_MECHANISM_PARAM_INVALID);
    const iv = Buffer.alloc(12);
    p.C_EncryptInit(s, gcm(pkcs11js.CKM_AES_GCM, iv), k);
    expect(iv.equals(Buffer.alloc(12))).toBe(true); // not yet: written at C_Encrypt time
    const out = p.C_Encrypt(s, pt, Buffer.alloc(pt.length + 16));
    expect(iv.equals(Buffer.alloc(12))).toBe(false);
    expect(em.log()).toContain(`gcm-iv zero-buffer ${iv.toString('hex')}`);
    expect(nodeDecrypt(iv, out)).toEqual(pt);
    // Decryption takes that IV back as a caller IV.
    p.C_DecryptInit(s, gcm(pkcs11js.CKM_AES_GCM, iv), k);
    expect(p.C_Decrypt(s, out, Buffer.alloc(out.length))).toEqual(pt);
  });

  it('appended (Luna FIPS): replaces the caller IV, puts a 16-byte IV after the tag; ulIvLen 0 + ulIvBits 96 gives 12 bytes', () => {
    vendor('luna');
    const s = session();
    const k = knownKey(s);
    const mine = Buffer.alloc(16, 7);
    p.C_EncryptInit(s, gcm(pkcs11js.CKM_AES_GCM, mine), k);
    expect(ckr(() => p.C_Encrypt(s, pt, Buffer.alloc(pt.length + 16)))).toBe(pkcs11js.CKR_BUFFER_TOO_SMALL);
    const out = p.C_Encrypt(s, pt, Buffer.alloc(pt.length + 32));
    expect(out.length).toBe(pt.length + 32);
    const iv = out.subarray(-16);
    expect(iv.equals(mine)).toBe(false);
    expect(nodeDecrypt(iv, out.subarray(0, -16))).toEqual(pt);
    p.C_DecryptInit(s, gcm(pkcs11js.CKM_AES_GCM, Buffer.from(iv)), k);
    expect(p.C_Decrypt(s, out.subarray(0, -16), Buffer.alloc(out.length))).toEqual(pt);

    p.C_EncryptInit(s, gcm(pkcs11js.CKM_AES_GCM, Buffer.alloc(0), 96), k);
    const short = p.C_Encrypt(s, pt, Buffer.alloc(pt.length + 28));
    expect(short.length).toBe(pt.length + 28);
    expect(nodeDecrypt(short.subarray(-12), short.subarray(0, -12))).toEqual(pt);
  });

  it('prepended (CKM_CLOUDHSM_AES_GCM): pIv NULL, IV in front on encrypt, read from the front on decrypt', () => {
    vendor('cloudhsm');
    const s = session('p11kms_cu:' + token.userPin);
    const k = knownKey(s);
    expect(p.C_GetMechanismList(slot)).toContain(CKM_CLOUDHSM_AES_GCM);
    expect(ckr(() => p.C_EncryptInit(s, gcm(CKM_CLOUDHSM_AES_GCM, Buffer.alloc(12)), k))).toBe(pkcs11js.CKR_MECHANISM_PARAM_INVALID);
    p.C_EncryptInit(s, gcm(CKM_CLOUDHSM_AES_GCM, Buffer.alloc(0)), k);
    const out = p.C_Encrypt(s, pt, Buffer.alloc(pt.length + 28));
    expect(nodeDecrypt(out.subarray(0, 12), out.subarray(12))).toEqual(pt);
    p.C_DecryptInit(s, gcm(CKM_CLOUDHSM_AES_GCM, Buffer.alloc(0)), k);
    expect(p.C_Decrypt(s, out, Buffer.alloc(out.length))).toEqual(pt);
    const tampered = Buffer.from(out);
    tampered[5]! ^= 1; // inside the IV
    p.C_DecryptInit(s, gcm(CKM_CLOUDHSM_AES_GCM, Buffer.alloc(0)), k);
    expect(ckr(() => p.C_Decrypt(s, tampered, Buffer.alloc(out.length)))).toBe(pkcs11js.CKR_ENCRYPTED_DATA_INVALID); // the preset's code, not SoftHSM2's
  });

  it('kmsp11-style: no CKM_AES_GCM, only CKM_CLOUDKMS_AES_GCM with write-back; strict ulIvBits', () => {
    vendor('kmsp11');
    const s = session();
    const k = knownKey(s);
    const mechs = p.C_GetMechanismList(slot);
    expect(mechs).toContain(CKM_CLOUDKMS_AES_GCM);
    expect(mechs).not.toContain(pkcs11js.CKM_AES_GCM);
    expect(ckr(() => p.C_EncryptInit(s, gcm(pkcs11js.CKM_AES_GCM, Buffer.alloc(12)), k))).toBe(pkcs11js.CKR_MECHANISM_INVALID);
    expect(ckr(() => p.C_EncryptInit(s, gcm(CKM_CLOUDKMS_AES_GCM, Buffer.alloc(12), 0), k))).toBe(pkcs11js.CKR_MECHANISM_PARAM_INVALID);
    const iv = Buffer.alloc(12);
    p.C_EncryptInit(s, gcm(CKM_CLOUDKMS_AES_GCM, iv), k);
    const out = p.C_Encrypt(s, pt, Buffer.alloc(pt.length + 16));
    expect(nodeDecrypt(iv, out)).toEqual(pt);
  });

  it('caller mode passes the IV through; a vendor decrypt-failure code replaces SoftHSM2 2.6.1 CKR_GENERAL_ERROR', () => {
    const s = session();
    const k = knownKey(s);
    const iv = randomBytes(12);
    p.C_EncryptInit(s, gcm(pkcs11js.CKM_AES_GCM, iv), k);
    expect(p.C_Encrypt(s, Buffer.from('x'), Buffer.alloc(17))).toEqual(nodeEncrypt(iv, Buffer.from('x')));
    vendor('nshield');
    const bad = nodeEncrypt(iv, Buffer.from('x'));
    bad[0]! ^= 1;
    p.C_DecryptInit(s, gcm(pkcs11js.CKM_AES_GCM, iv), k);
    expect(ckr(() => p.C_Decrypt(s, bad, Buffer.alloc(17)))).toBe(pkcs11js.CKR_FUNCTION_FAILED);
  });
});

describe('mechanisms, sessions, PINs, templates', () => {
  it('YubiHSM 2: GCM hidden, RFC 5649 wrap only under CKM_AES_KEY_WRAP_KWP (0x210B), 16 sessions, 0001 PIN prefix', () => {
    vendor('yubihsm2');
    const mechs = p.C_GetMechanismList(slot);
    expect(mechs).not.toContain(pkcs11js.CKM_AES_GCM);
    expect(mechs).not.toContain(pkcs11js.CKM_AES_KEY_WRAP_PAD);
    expect(mechs).toContain(CKM_AES_KEY_WRAP_KWP);
    expect(p.C_GetTokenInfo(slot).maxRwSessionCount).toBe(16);
    const open = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    expect(ckr(() => p.C_Login(open, pkcs11js.CKU_USER, token.userPin))).toBe(pkcs11js.CKR_PIN_INCORRECT);
    p.C_CloseSession(open);
    const s = session('0001' + token.userPin);
    const k = knownKey(s);
    expect(ckr(() => p.C_WrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, k, k, Buffer.alloc(64)))).toBe(pkcs11js.CKR_MECHANISM_INVALID);
    expect(p.C_WrapKey(s, { mechanism: CKM_AES_KEY_WRAP_KWP }, k, k, Buffer.alloc(64)).length).toBe(40);
    const many: Buffer[] = [];
    let refused: number | 'ok' = 'ok';
    for (let i = 0; i < 20 && refused === 'ok'; i++) {
      refused = ckr(() => many.push(p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION)));
    }
    expect(refused).toBe(pkcs11js.CKR_SESSION_COUNT);
    expect(many.length + 1).toBe(16); // plus the logged-in one
    for (const m of many) p.C_CloseSession(m);
  });

  it('CloudHSM: read-only sessions refused, explicit CKA_SENSITIVE refused on AES key generation', () => {
    vendor('cloudhsm');
    expect(ckr(() => p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION))).toBe(pkcs11js.CKR_FUNCTION_NOT_SUPPORTED);
    const s = session('p11kms_cu:' + token.userPin);
    const template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_TOKEN, value: false },
    ];
    expect(ckr(() => p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [...template, { type: pkcs11js.CKA_SENSITIVE, value: true }]))).toBe(
      pkcs11js.CKR_ATTRIBUTE_TYPE_INVALID,
    );
    expect(p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, template)).toBeDefined();
  });
});

describe('latency and faults', () => {
  const timed = (f: () => unknown): number => {
    const t = performance.now();
    f();
    return performance.now() - t;
  };

  it('latency sleeps in the calling thread on calls that reach the HSM, not on local ones', () => {
    const s = session();
    em.set({ latency_ms: 40, jitter_ms: 10 });
    expect(timed(() => p.C_GenerateRandom(s, Buffer.alloc(8)))).toBeGreaterThanOrEqual(39);
  });

  it('device errors at a rate, failover invalidates every session, the token goes away for a while, calls hang until lifted', () => {
    const s = session();
    em.set({ device_error_rate: 1 });
    expect(ckr(() => p.C_GenerateRandom(s, Buffer.alloc(8)))).toBe(pkcs11js.CKR_DEVICE_ERROR);
    em.set({ failover: 1 });
    expect(ckr(() => p.C_GenerateRandom(s, Buffer.alloc(8)))).toBe(pkcs11js.CKR_SESSION_HANDLE_INVALID);
    expect(em.log()).toContain('event failover: all sessions closed');
    const again = session(); // a new session logs in again (the failover logged the token out)
    expect(p.C_GenerateRandom(again, Buffer.alloc(8)).length).toBe(8);

    em.set({ failover: 1, token_absent_until: Date.now() + 600 });
    expect(ckr(() => p.C_GenerateRandom(again, Buffer.alloc(8)))).toBe(pkcs11js.CKR_TOKEN_NOT_PRESENT);
    expect(p.C_GetSlotList(true)).toHaveLength(0);
    expect(ckr(() => p.C_GetTokenInfo(slot))).toBe(pkcs11js.CKR_TOKEN_NOT_PRESENT);
    const until = Date.now() + 700;
    while (Date.now() < until) {
      /* wait for the token to come back */
    }
    expect(ckr(() => p.C_GenerateRandom(again, Buffer.alloc(8)))).toBe(pkcs11js.CKR_SESSION_HANDLE_INVALID);
    const back = session();

    const k = knownKey(back);
    em.set({ failover: 1, hang_until: Date.now() + 300 });
    const iv = randomBytes(12);
    p.C_EncryptInit(back, gcm(pkcs11js.CKM_AES_GCM, iv), k);
    expect(timed(() => p.C_Encrypt(back, Buffer.from('x'), Buffer.alloc(17)))).toBeGreaterThanOrEqual(250);
    expect(em.log()).toContain('fault hang C_Encrypt');
  });
});


