import { randomFillSync } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { AuthenticationFailed, type TokenCore } from '../session-core.js';
import { macEquals } from './hmac.js';
import type { Sealed } from './sealed.js';

/**
 * Authenticated encryption for tokens without AES-GCM (YubiHSM 2, opencryptoki's soft token):
 * AES-256-CBC under one token key, then HMAC-SHA-256 under a second, independent token key
 * (encrypt-then-MAC). Both keys are generated in the token, sensitive and non-extractable, under
 * the key version's CKA_ID (told apart by CKA_KEY_TYPE); both operations run in the token.
 *
 *   iv     16 random bytes (the daemon's CSPRNG; CBC needs unpredictable IVs, not secret ones)
 *   c      AES-256-CBC(K_enc, iv, PKCS#7-pad(plaintext))
 *   tag    HMAC-SHA-256(K_mac, DOMAIN ‖ u32be(len(aad)) ‖ aad ‖ iv ‖ c)      32 bytes
 *   sealed c ‖ tag
 *
 * Why it is sound: encrypt-then-MAC with independent keys is IND-CCA2 and INT-CTXT when the
 * cipher is IND-CPA (CBC with random IVs) and the MAC is strongly unforgeable (HMAC-SHA-256),
 * Bellare & Namprempre 2000. The MAC covers the IV and the aad (ciphertext header and canonical
 * encryption context), length-prefixed so no bytes can move between aad and ciphertext. The tag
 * is recomputed in the token and compared (constant time) before anything is decrypted, so the padding is only ever
 * checked on authentic ciphertexts: no padding oracle. The domain string binds the tag to this
 * construction. Padding is done here: it is public structure, and the plaintext is in this
 * process anyway (the caller sent it).
 */
export class CbcHmac {
  static readonly IV_BYTES = 16;
  static readonly TAG_BYTES = 32;
  private static readonly DOMAIN = Buffer.from('p11kms aes-256-cbc-hmac-sha256 v1\0', 'ascii');

  constructor(private readonly core: TokenCore) {}

  async generate(id: Buffer, label: string): Promise<void> {
    await this.core.run(async (s) => {
      const enc = await this.core.p.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, this.core.templates.secretKey(id, label));
      try {
        await this.core.p.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, this.core.templates.macKey(id, label, 32));
      } catch (e) {
        this.core.destroyQuietly(s, [enc]); // never half a key
        throw e;
      }
    }, 'CKM_AES_KEY_GEN', 'generate');
  }

  seal(id: Buffer, aad: Buffer, plaintext: Buffer): Promise<Sealed> {
    const iv = randomFillSync(Buffer.allocUnsafe(CbcHmac.IV_BYTES));
    const padded = pad(plaintext);
    return this.core.run(async (s) => {
      try {
        this.core.p.C_EncryptInit(s, { mechanism: pkcs11js.CKM_AES_CBC, parameter: iv }, this.core.secretKeyOfType(s, id, pkcs11js.CKK_AES));
        const c = await this.core.p.C_EncryptAsync(s, padded, Buffer.alloc(padded.length));
        this.core.p.C_SignInit(s, { mechanism: pkcs11js.CKM_SHA256_HMAC }, this.macKey(s, id));
        const tag = await this.core.p.C_SignAsync(s, this.macInput(aad, iv, c), Buffer.alloc(CbcHmac.TAG_BYTES));
        return { iv, sealed: Buffer.concat([c, tag]) };
      } finally {
        padded.fill(0);
      }
    }, 'CKM_AES_CBC', 'encrypt');
  }

  open(id: Buffer, iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> {
    const cLength = sealed.length - CbcHmac.TAG_BYTES;
    if (iv.length !== CbcHmac.IV_BYTES || cLength < 16 || cLength % 16 !== 0) return Promise.reject(new AuthenticationFailed());
    const c = sealed.subarray(0, cLength);
    const tag = sealed.subarray(cLength);
    return this.core.run(async (s) => {
      // The token computes the tag; the comparison is here (see HmacVerbs.verifyMac for why not C_Verify).
      this.core.p.C_SignInit(s, { mechanism: pkcs11js.CKM_SHA256_HMAC }, this.macKey(s, id));
      const expected = await this.core.p.C_SignAsync(s, this.macInput(aad, iv, c), Buffer.alloc(CbcHmac.TAG_BYTES));
      if (!macEquals(expected, tag)) throw new AuthenticationFailed();
      this.core.p.C_DecryptInit(s, { mechanism: pkcs11js.CKM_AES_CBC, parameter: iv }, this.core.secretKeyOfType(s, id, pkcs11js.CKK_AES));
      const padded = await this.core.p.C_DecryptAsync(s, c, Buffer.alloc(c.length));
      const plaintext = unpad(padded);
      padded.fill(0);
      // An authentic ciphertext with bad padding means a broken key or token, never an attacker.
      if (!plaintext) throw new Error('AES-CBC output of an authentic ciphertext has invalid padding');
      return plaintext;
    }, 'CKM_AES_CBC', 'decrypt');
  }

  private macKey(s: Buffer, id: Buffer): Buffer {
    return this.core.secretKeyOfType(s, id, pkcs11js.CKK_GENERIC_SECRET);
  }

  private macInput(aad: Buffer, iv: Buffer, c: Buffer): Buffer {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(aad.length, 0);
    return Buffer.concat([CbcHmac.DOMAIN, len, aad, iv, c]);
  }
}

function pad(b: Buffer): Buffer {
  const n = 16 - (b.length % 16);
  const out = Buffer.alloc(b.length + n, n);
  b.copy(out);
  return out;
}

function unpad(b: Buffer): Buffer | undefined {
  const n = b.length > 0 ? b[b.length - 1]! : 0;
  if (n < 1 || n > 16 || n > b.length) return undefined;
  for (let i = b.length - n; i < b.length; i++) if (b[i] !== n) return undefined;
  return Buffer.from(b.subarray(0, b.length - n));
}
