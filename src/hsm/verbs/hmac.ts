import pkcs11js from 'pkcs11js';
import { hmacMechanism, type HashName } from '../asymmetric.js';
import { verdict, type TokenCore } from '../session-core.js';

/** HMAC keys: generic secrets that can only sign and verify, inside the token. */
export class HmacVerbs {
  constructor(private readonly core: TokenCore) {}

  /** Generates a non-extractable generic secret of `bytes` bytes for HMAC (sign/verify only). */
  async generateHmacKey(id: Buffer, label: string, bytes: number): Promise<void> {
    const template: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_VALUE_LEN, value: bytes },
      ...this.core.templates.protectedObject(id, label),
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
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

  /** HMAC verification inside the token (the module compares); false when the MAC differs. */
  verifyMac(id: Buffer, hash: HashName, message: Buffer, mac: Buffer): Promise<boolean> {
    return this.core.run((s) => {
      this.core.p.C_VerifyInit(s, hmacMechanism(hash), this.core.objectFor(s, id, pkcs11js.CKO_SECRET_KEY));
      return verdict(() => this.core.p.C_VerifyAsync(s, message, mac));
    }, `CKM_${hash.toUpperCase()}_HMAC`, 'verify');
  }
}
