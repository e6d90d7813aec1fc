import { timingSafeEqual } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { hmacMechanism, type HashName } from '../asymmetric.js';
import type { TokenCore } from '../session-core.js';

/** HMAC keys: generic secrets that can only sign and verify, inside the token. */
export class HmacVerbs {
  constructor(private readonly core: TokenCore) {}

  /** Generates a non-extractable generic secret of `bytes` bytes for HMAC (sign/verify only). */
  async generateHmacKey(id: Buffer, label: string, bytes: number): Promise<void> {
    const template = this.core.templates.macKey(id, label, bytes);
    await this.core.run(async (s) => {
      const h = await this.core.p.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN }, template);
      this.core.handles.set(`${id.toString('hex')}/${pkcs11js.CKO_SECRET_KEY}`, h);
    }, 'CKM_GENERIC_SECRET_KEY_GEN', 'generate');
  }


  /** HMAC inside the token. */
  mac(id: Buffer, hash: HashName, message: Buffer): Promise<Buffer> {
    return this.core.run((s) => {
      this.core.p.C_SignInit(s, hmacMechanism(hash), this.core.objectFor(s, id, pkcs11js.CKO_SECRET_KEY));
      return this.core.p.C_SignAsync(s, message, Buffer.alloc(64));
    }, `CKM_${hash.toUpperCase()}_HMAC`, 'sign');
  }

  /**
   * HMAC verification: the token computes the MAC, this process compares in constant time.
   * Not C_Verify: modules disagree on what a mismatch returns (NSS softoken answers
   * CKR_DEVICE_ERROR, which means "token lost" everywhere else), and the MAC is not secret.
   */
  verifyMac(id: Buffer, hash: HashName, message: Buffer, mac: Buffer): Promise<boolean> {
    return this.core.run(async (s) => {
      this.core.p.C_SignInit(s, hmacMechanism(hash), this.core.objectFor(s, id, pkcs11js.CKO_SECRET_KEY));
      return macEquals(await this.core.p.C_SignAsync(s, message, Buffer.alloc(64)), mac);
    }, `CKM_${hash.toUpperCase()}_HMAC`, 'verify');
  }
}

/** Constant-time comparison of a computed MAC with a given one (lengths are public). */
export function macEquals(computed: Buffer, given: Buffer): boolean {
  return computed.length === given.length && timingSafeEqual(computed, given);
}
