import pkcs11js from 'pkcs11js';

/**
 * The key templates the daemon gives the token, with the module's adjustments applied (for
 * now: whether CKA_MODIFIABLE=false may be set). Every persistent object is private, and every
 * secret or private key is sensitive and non-extractable.
 */
export class KeyTemplates {
  constructor(private readonly modifiableFalse: boolean) {}

  /** A token AES-256 key for KMS symmetric keys: sensitive, non-extractable, encrypt/decrypt only. */
  secretKey(id: Buffer, label: string): pkcs11js.Template {
    const t: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_VERIFY, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    if (this.modifiableFalse) t.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
    return t;
  }

  /** The attributes every persistent key object of the daemon carries. */
  protectedObject(id: Buffer, label: string): pkcs11js.Template {
    const t: pkcs11js.Template = [
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
    ];
    if (this.modifiableFalse) t.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
    return t;
  }

  /**
   * An AES secret-key template for a short-lived session object (never stored in the token),
   * sensitive, non-extractable and allowed only the given usage.
   */
  sessionAes(usage: { encrypt?: boolean; wrap?: boolean; unwrap?: boolean } = {}): pkcs11js.Template {
    return [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: usage.encrypt ?? false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: usage.wrap ?? false },
      { type: pkcs11js.CKA_UNWRAP, value: usage.unwrap ?? false },
    ];
  }
}
