import pkcs11js from 'pkcs11js';
import { Errors } from '../../errors.js';
import {
  CURVES, ecdsaDerToRaw, ecdsaRawToDer, ecSpki, keyGenMechanism, oaepDecode, oaepMechanism, pairKeyType, pairShape,
  rsaSpki, signMechanism, unwrapEcPoint, type HashName, type KeyKind, type PairUsage, type SignScheme,
} from '../asymmetric.js';
import { ckrOf, isSessionLost, isStaleHandle } from '../ckr.js';
import { AuthenticationFailed, verdict, type TokenCore } from '../session-core.js';

/** Metric labels for the signing schemes' PKCS#11 mechanisms. */
const SIGN_MECHANISM_NAMES: Record<SignScheme, string> = { 'rsa-pkcs1': 'CKM_RSA_PKCS', 'rsa-pss': 'CKM_RSA_PKCS_PSS', ecdsa: 'CKM_ECDSA' };

/**
 * Key pairs in the token: generation, signing and verification, RSA-OAEP decryption, public
 * keys and ECDH. Both halves of a key pair carry the key version's CKA_ID and label; they are
 * told apart by CKA_CLASS. Private parts are sensitive and non-extractable.
 */
export class AsymmetricVerbs {
  /** Hashes for which the module refused CKM_RSA_PKCS_OAEP's parameters (SoftHSM2: all but SHA-1). */
  private readonly rawOaepHashes = new Set<HashName>();

  constructor(private readonly core: TokenCore) {}

  /**
   * Generates a key pair inside the token: the private half sensitive, non-extractable and
   * allowed exactly one usage; the public half readable (it is published by GetPublicKey).
   */
  async generateKeyPair(id: Buffer, label: string, kind: KeyKind, usage: PairUsage): Promise<void> {
    const publicTemplate: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      ...pairShape(kind),
      ...this.core.templates.protectedObject(id, label),
      { type: pkcs11js.CKA_VERIFY, value: usage === 'sign' },
      { type: pkcs11js.CKA_ENCRYPT, value: usage === 'decrypt' },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    const privateTemplate: pkcs11js.Template = [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pairKeyType(kind) },
      ...this.core.templates.protectedObject(id, label),
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: usage === 'sign' },
      { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: usage === 'decrypt' },
      { type: pkcs11js.CKA_DERIVE, value: usage === 'derive' },
      { type: pkcs11js.CKA_UNWRAP, value: false },
    ];
    await this.core.run(async (s) => {
      let pair: pkcs11js.KeyPair;
      try {
        pair = await this.core.p.C_GenerateKeyPairAsync(s, keyGenMechanism(kind), publicTemplate, privateTemplate);
      } catch (e) {
        this.core.keyGenFailed(e, kind);
      }
      const hex = id.toString('hex');
      this.core.handles.set(`${hex}/${pkcs11js.CKO_PRIVATE_KEY}`, pair.privateKey);
      this.core.handles.set(`${hex}/${pkcs11js.CKO_PUBLIC_KEY}`, pair.publicKey);
    });
  }


  /** Signs a digest with the private half; ECDSA signatures come back DER-encoded. */
  sign(id: Buffer, scheme: SignScheme, hash: HashName, digest: Buffer): Promise<Buffer> {
    const { mech, input } = signMechanism(scheme, hash, digest);
    return this.core.run(async (s) => {
      this.core.p.C_SignInit(s, mech, this.core.objectFor(s, id, pkcs11js.CKO_PRIVATE_KEY));
      const signature = await this.core.p.C_SignAsync(s, input, Buffer.alloc(1024));
      return scheme === 'ecdsa' ? ecdsaRawToDer(signature) : signature;
    }, SIGN_MECHANISM_NAMES[scheme], 'sign');
  }

  /** Verifies with the public half inside the token; false for any signature that does not verify. */
  verify(id: Buffer, kind: KeyKind, scheme: SignScheme, hash: HashName, digest: Buffer, signature: Buffer): Promise<boolean> {
    const { mech, input } = signMechanism(scheme, hash, digest);
    let sig: Buffer | undefined = signature;
    if (scheme === 'ecdsa') sig = kind.type === 'ec' ? ecdsaDerToRaw(signature, CURVES[kind.curve].bytes) : undefined;
    if (!sig) return Promise.resolve(false);
    const raw = sig;
    return this.core.run(async (s) => {
      this.core.p.C_VerifyInit(s, mech, this.core.objectFor(s, id, pkcs11js.CKO_PUBLIC_KEY));
      return verdict(() => this.core.p.C_VerifyAsync(s, input, raw));
    }, SIGN_MECHANISM_NAMES[scheme], 'verify');
  }


  /**
   * RSAES-OAEP decryption with the private half. Uses CKM_RSA_PKCS_OAEP when the module takes
   * the hash; when it refuses the parameters (SoftHSM2 2.6 only does SHA-1), the token does the
   * raw RSA operation (CKM_RSA_X_509) and the padding is removed here. Throws
   * AuthenticationFailed for any ciphertext that does not decrypt.
   */
  decryptOaep(id: Buffer, hash: HashName, ciphertext: Buffer): Promise<Buffer> {
    const k = ciphertext.length;
    const failed = (e: unknown): never => {
      if (ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new AuthenticationFailed();
      throw e;
    };
    return this.core.run(async (s) => {
      const key = this.core.objectFor(s, id, pkcs11js.CKO_PRIVATE_KEY);
      const native = this.core.mechanismSet?.has(pkcs11js.CKM_RSA_PKCS_OAEP) ?? false;
      if (native && !this.rawOaepHashes.has(hash)) {
        let initialized = false;
        try {
          this.core.p.C_DecryptInit(s, oaepMechanism(hash), key);
          initialized = true;
        } catch (e) {
          const code = ckrOf(e);
          if (code !== pkcs11js.CKR_ARGUMENTS_BAD && code !== pkcs11js.CKR_MECHANISM_PARAM_INVALID) throw e;
          this.rawOaepHashes.add(hash);
          this.core.log.info({ token: this.core.opts.tokenLabel, hash }, 'module refuses this OAEP hash; using raw RSA and OAEP decoding');
        }
        if (initialized) return this.core.p.C_DecryptAsync(s, ciphertext, Buffer.alloc(k)).catch(failed);
      }
      this.core.p.C_DecryptInit(s, { mechanism: pkcs11js.CKM_RSA_X_509 }, key);
      const out = await this.core.p.C_DecryptAsync(s, ciphertext, Buffer.alloc(k)).catch(failed);
      const em = out.length === k ? out : Buffer.concat([Buffer.alloc(k - out.length), out]);
      const plaintext = oaepDecode(hash, em, k);
      out.fill(0);
      em.fill(0);
      if (!plaintext) throw new AuthenticationFailed();
      return plaintext;
    });
  }

  /** The public half as DER SubjectPublicKeyInfo. */
  async publicKeyInfo(id: Buffer, kind: KeyKind): Promise<Buffer> {
    const hex = id.toString('hex');
    const cached = this.core.publicKeys.get(hex);
    if (cached) return cached;
    const spki = await this.core.run((s) => {
      const h = this.core.objectFor(s, id, pkcs11js.CKO_PUBLIC_KEY);
      if (kind.type === 'rsa') {
        const [n, e] = this.core.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
        return rsaSpki(n?.value as Buffer, e?.value as Buffer);
      }
      if (kind.type !== 'ec') throw Errors.unsupported('This key has no public key.');
      const [point] = this.core.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_EC_POINT }]);
      return ecSpki(kind.curve, unwrapEcPoint(point?.value as Buffer, kind.curve));
    });
    this.core.publicKeys.set(hex, spki);
    return spki;
  }

  /**
   * ECDH (CKM_ECDH1_DERIVE, no KDF) with the private half and a peer's uncompressed point. The
   * raw shared secret is what AWS returns, so it is derived as a short-lived session object that
   * may be read, read once, and destroyed.
   */
  deriveEcdh(id: Buffer, curve: keyof typeof CURVES, peerPoint: Buffer): Promise<Buffer> {
    return this.core.run(async (s) => {
      const secret = await this.core.p.C_DeriveKeyAsync(
        s,
        {
          mechanism: pkcs11js.CKM_ECDH1_DERIVE,
          parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: peerPoint } as pkcs11js.ECDH1,
        },
        this.core.objectFor(s, id, pkcs11js.CKO_PRIVATE_KEY),
        [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
          { type: pkcs11js.CKA_VALUE_LEN, value: CURVES[curve].bytes },
          { type: pkcs11js.CKA_TOKEN, value: false },
          { type: pkcs11js.CKA_PRIVATE, value: true },
          { type: pkcs11js.CKA_SENSITIVE, value: false },
          { type: pkcs11js.CKA_EXTRACTABLE, value: true },
        ],
      );
      try {
        const [value] = this.core.p.C_GetAttributeValue(s, secret, [{ type: pkcs11js.CKA_VALUE }]);
        return Buffer.from(value?.value as Buffer);
      } finally {
        this.core.p.C_DestroyObject(s, secret);
      }
    });
  }
}
