import pkcs11js from 'pkcs11js';
import type { Capabilities } from './profile.js';

/**
 * The key templates the daemon gives the token, with the profile's adjustments applied
 * (whether CKA_MODIFIABLE=false may be set; whether AES generation may name CKA_SENSITIVE).
 * Every persistent object is private, and every secret or private key is sensitive and
 * non-extractable (where the module refuses an explicit CKA_SENSITIVE, its keys are sensitive
 * by default: that is proven by the attribute test, not assumed).
 */
export class KeyTemplates {
  private readonly modifiableFalse: boolean;
  private readonly aesExplicitSensitive: boolean;

  constructor(caps: Pick<Capabilities, 'modifiableFalse' | 'aesExplicitSensitive'>) {
    this.modifiableFalse = caps.modifiableFalse;
    this.aesExplicitSensitive = caps.aesExplicitSensitive;
  }

  /**
   * A token AES-256 key for KMS symmetric keys: sensitive, non-extractable, encrypt/decrypt only.
   * `wrappable` (Multi-Region keys, issue 13): CKA_EXTRACTABLE with CKA_WRAP_WITH_TRUSTED, so the
   * token wraps it only under a key its security officer marked CKA_TRUSTED (peer-keys.ts); it
   * stays sensitive (CKA_VALUE is never readable).
   */
  secretKey(id: Buffer, label: string, wrappable = false): pkcs11js.Template {
    const t: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: wrappable },
      ...(wrappable ? [{ type: pkcs11js.CKA_WRAP_WITH_TRUSTED, value: true }] : []),
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_VERIFY, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    if (this.modifiableFalse) t.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
    return this.aesExplicitSensitive ? t : t.filter((a) => a.type !== pkcs11js.CKA_SENSITIVE);
  }

  /** A token generic secret for HMAC (HMAC KMS keys, and the MAC half of an AES-CBC + HMAC key): sign/verify only. */
  macKey(id: Buffer, label: string, bytes: number): pkcs11js.Template {
    return [{ type: pkcs11js.CKA_VALUE_LEN, value: bytes }, ...this.hmacKey(this.protectedObject(id, label))];
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
   * A token RSA private key that can only unwrap: sensitive, never extractable (the wrapping
   * key of an import, verbs/wrap.ts; a peer receive key, peer-keys.ts). `rawDecrypt` adds raw RSA
   * decryption, for a wrapping key whose OAEP the daemon decodes (needsRawOaep).
   */
  unwrapOnlyRsaPrivate(id: Buffer, label: string, rawDecrypt = false): pkcs11js.Template {
    const t: pkcs11js.Template = [
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: rawDecrypt },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    if (this.modifiableFalse) t.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
    return t;
  }

  /**
   * An HMAC key (generic secret) that can only sign and verify, sensitive and non-extractable;
   * `placement` (id, label, token or session) goes last, after which SoftHSM2 refuses further
   * attributes of an unwrap template once CKA_MODIFIABLE=false is among them.
   */
  hmacKey(placement: pkcs11js.Template): pkcs11js.Template {
    return [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
      ...placement,
    ];
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
