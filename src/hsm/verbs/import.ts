import { createECDH, createHash, createPublicKey, ECDH, verify } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { CURVES, ecSpki, hmacMechanism, rsaSpki, type Curve, type HashName } from '../asymmetric.js';
import { ckrOf, isSessionLost, isStaleHandle } from '../ckr.js';
import type { Handle, TokenCore } from '../session-core.js';
import { KeyMaterialRejected, placement, readUlong, unwrapImport, type ImportWrapping } from './unwrap.js';

export type { ImportWrapping } from './unwrap.js';

/** What imported material becomes in the token (asymmetric: the private half; the public half is made from it). */
export type ImportedKind =
  | { type: 'hmac'; hash: HashName; minBytes: number; maxBytes: number }
  | { type: 'rsa'; bits: number; usage: 'sign' | 'decrypt' }
  | { type: 'ec'; curve: Curve };


const CHECK_BLOCK = Buffer.from('p11kms check val', 'ascii');
const HMAC_CHECK_DOMAIN = 'p11kms:hmac-material-check:v1';
const PUBLIC_CHECK_DOMAIN = 'p11kms:asymmetric-material-check:v1';

/**
 * Imported HMAC and RSA key material (issue #12), unwrapped inside the token as AES key material
 * is (verbs/wrap.ts): CKM_RSA_PKCS_OAEP for the ephemeral AES key or the material itself, then
 * RFC 5649 unwrap (the profile's KWP mechanism) of the material — HMAC bytes, or a PKCS#8
 * private key, which only RSA_AES_KEY_WRAP can carry. The material never exists in this process.
 *
 * Check values recognise the same material without extracting it: for HMAC, a digest of an HMAC
 * the token computes over a fixed block; for RSA, a digest of the public key (modulus and
 * exponent are public attributes of the private object).
 */
export class ImportVerbs {
  constructor(private readonly core: TokenCore) {}

  unwrapKeyMaterial(
    wrappingKeyId: Buffer,
    wrapping: ImportWrapping,
    blob: Buffer,
    kind: ImportedKind,
    target?: { id: Buffer; label: string },
  ): Promise<Buffer> {
    return this.core.run(async (s) => {
      const rsa = this.core.handleFor(s, wrappingKeyId);
      if (kind.type === 'ec') return this.unwrapEc(s, rsa, wrapping, blob, kind.curve, target);
      const template = kind.type === 'hmac' ? this.hmacTemplate(target) : this.rsaPrivateTemplate(kind.usage, target);
      const ephemeral: Handle[] = [];
      const made: Handle[] = [];
      let done = false;
      try {
        const key = await unwrapImport(this.core, s, rsa, wrapping, blob, template, ephemeral);
        made.push(key);
        let check: Buffer;
        if (kind.type === 'hmac') {
          check = await this.hmacCheck(s, key, kind);
        } else {
          const spki = this.rsaPublicOf(s, key, kind.bits);
          check = createHash('sha256').update(PUBLIC_CHECK_DOMAIN).update(spki).digest();
          if (target) made.push(this.createRsaPublic(s, key, kind.usage, target));
        }
        if (target) {
          const hex = target.id.toString('hex');
          if (kind.type === 'hmac') this.core.handles.set(`${hex}/${pkcs11js.CKO_SECRET_KEY}`, key);
          else this.core.handles.set(`${hex}/${pkcs11js.CKO_PRIVATE_KEY}`, key);
        }
        done = true;
        return check;
      } finally {
        // Session objects always go; token objects only when something failed after they were made.
        this.core.destroyQuietly(s, target && done ? ephemeral : [...ephemeral, ...made]);
      }
    });
  }

  /**
   * An EC private key (SIGN_VERIFY). PKCS#11 exposes no public point on a private key object, so
   * the point is recovered without the private value leaving the token: the key is unwrapped
   * once more as a session object that may derive and sign; ECDH with the curve's generator G
   * gives x(d·G), the public point's x; of the two points with that x, the one that verifies a
   * signature made by the token is the public key. Then the target object (sign only) and its
   * public half are made.
   */
  private async unwrapEc(
    s: Handle, rsa: Handle, wrapping: ImportWrapping, blob: Buffer, curve: Curve, target?: { id: Buffer; label: string },
  ): Promise<Buffer> {
    const ephemeral: Handle[] = [];
    const made: Handle[] = [];
    let done = false;
    try {
      const probe = await unwrapImport(this.core, s, rsa, wrapping, blob, this.ecPrivateTemplate(true), ephemeral);
      ephemeral.push(probe);
      const [params] = this.core.p.C_GetAttributeValue(s, probe, [{ type: pkcs11js.CKA_EC_PARAMS }]);
      if (!(params?.value instanceof Buffer) || !params.value.equals(CURVES[curve].params)) throw new KeyMaterialRejected();
      const point = await this.publicPointOf(s, probe, curve);
      const spki = ecSpki(curve, point);
      if (target) {
        made.push(await unwrapImport(this.core, s, rsa, wrapping, blob, this.ecPrivateTemplate(false, target), ephemeral));
        const h = this.core.p.C_CreateObject(s, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
          { type: pkcs11js.CKA_EC_PARAMS, value: CURVES[curve].params },
          { type: pkcs11js.CKA_EC_POINT, value: derOctetString(point) },
          { type: pkcs11js.CKA_VERIFY, value: true },
          { type: pkcs11js.CKA_ENCRYPT, value: false },
          { type: pkcs11js.CKA_WRAP, value: false },
          { type: pkcs11js.CKA_DERIVE, value: false },
          ...this.core.templates.protectedObject(target.id, target.label),
        ]);
        made.push(h);
        const hex = target.id.toString('hex');
        this.core.handles.set(`${hex}/${pkcs11js.CKO_PRIVATE_KEY}`, made[0] as Handle);
        this.core.handles.set(`${hex}/${pkcs11js.CKO_PUBLIC_KEY}`, h);
      }
      done = true;
      return createHash('sha256').update(PUBLIC_CHECK_DOMAIN).update(spki).digest();
    } finally {
      this.core.destroyQuietly(s, target && done ? ephemeral : [...ephemeral, ...made]);
    }
  }

  /** The uncompressed public point of an EC private key object that may derive and sign (see unwrapEc). */
  private async publicPointOf(s: Handle, probe: Handle, curve: Curve): Promise<Buffer> {
    const { oidName, bytes } = CURVES[curve];
    const generator = createECDH(oidName);
    generator.setPrivateKey(Buffer.concat([Buffer.alloc(bytes - 1), Buffer.from([1])]));
    const secret = await this.core.p.C_DeriveKeyAsync(
      s,
      { mechanism: pkcs11js.CKM_ECDH1_DERIVE, parameter: { type: pkcs11js.CK_PARAMS_EC_DH, kdf: pkcs11js.CKD_NULL, publicData: generator.getPublicKey() } as pkcs11js.ECDH1 },
      probe,
      [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
        { type: pkcs11js.CKA_VALUE_LEN, value: bytes },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_SENSITIVE, value: false },
        { type: pkcs11js.CKA_EXTRACTABLE, value: true },
      ],
    );
    let x: Buffer;
    try {
      // x(d·G) is the public point's x coordinate: public, not secret.
      x = Buffer.from(this.core.p.C_GetAttributeValue(s, secret, [{ type: pkcs11js.CKA_VALUE }])[0]?.value as Buffer);
    } finally {
      this.core.destroyQuietly(s, [secret]);
    }
    const message = Buffer.from('p11kms: which of the two points is the public key');
    this.core.p.C_SignInit(s, { mechanism: pkcs11js.CKM_ECDSA }, probe);
    const signature = await this.core.p.C_SignAsync(s, createHash('sha256').update(message).digest(), Buffer.alloc(2 * bytes));
    for (const prefix of [0x02, 0x03]) {
      const point = ECDH.convertKey(Buffer.concat([Buffer.from([prefix]), x]), oidName, undefined, undefined, 'uncompressed') as Buffer;
      const key = createPublicKey({ key: ecSpki(curve, point), format: 'der', type: 'spki' });
      if (verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, signature)) return point;
    }
    throw new KeyMaterialRejected();
  }

  private ecPrivateTemplate(probe: boolean, target?: { id: Buffer; label: string }): pkcs11js.Template {
    return [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      // Only the session probe derives (ECDH with G, to learn the public point).
      { type: pkcs11js.CKA_DERIVE, value: probe },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      ...placement(this.core, probe ? undefined : target),
    ];
  }

  private hmacTemplate(target?: { id: Buffer; label: string }): pkcs11js.Template {
    return this.core.templates.hmacKey(placement(this.core, target));
  }

  private rsaPrivateTemplate(usage: 'sign' | 'decrypt', target?: { id: Buffer; label: string }): pkcs11js.Template {
    return [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: usage === 'sign' },
      { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: usage === 'decrypt' },
      { type: pkcs11js.CKA_DERIVE, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      ...placement(this.core, target),
    ];
  }

  /** The HMAC key's check value; material outside AWS's length range for the spec is refused. */
  private async hmacCheck(s: Handle, key: Handle, kind: Extract<ImportedKind, { type: 'hmac' }>): Promise<Buffer> {
    const [len] = this.core.p.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_VALUE_LEN }]);
    const bytes = len?.value instanceof Buffer && len.value.length > 0 ? readUlong(len.value) : 0;
    if (bytes !== 0 && (bytes < kind.minBytes || bytes > kind.maxBytes)) throw new KeyMaterialRejected();
    try {
      this.core.p.C_SignInit(s, hmacMechanism(kind.hash), key);
      const mac = await this.core.p.C_SignAsync(s, CHECK_BLOCK, Buffer.alloc(64));
      return createHash('sha256').update(HMAC_CHECK_DOMAIN).update(mac).digest();
    } catch (e) {
      if (ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new KeyMaterialRejected();
      throw e;
    }
  }

  /** The public key of an unwrapped RSA private key; one of another size than the key spec's is refused. */
  private rsaPublicOf(s: Handle, key: Handle, bits: number): Buffer {
    const [n, e] = this.core.p.C_GetAttributeValue(s, key, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
    if (!(n?.value instanceof Buffer) || !(e?.value instanceof Buffer)) throw new KeyMaterialRejected();
    const modulus = n.value.subarray(n.value.findIndex((b) => b !== 0));
    if (modulus.length * 8 !== bits || (modulus[0] as number) < 0x80) throw new KeyMaterialRejected();
    return rsaSpki(n.value, e.value);
  }

  /** The public half, as generateKeyPair makes it: same CKA_ID and label, readable, one usage. */
  private createRsaPublic(s: Handle, privateKey: Handle, usage: 'sign' | 'decrypt', target: { id: Buffer; label: string }): Handle {
    const [n, e] = this.core.p.C_GetAttributeValue(s, privateKey, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
    const h = this.core.p.C_CreateObject(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
      { type: pkcs11js.CKA_MODULUS, value: n?.value as Buffer },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: e?.value as Buffer },
      { type: pkcs11js.CKA_VERIFY, value: usage === 'sign' },
      { type: pkcs11js.CKA_ENCRYPT, value: usage === 'decrypt' },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
      ...this.core.templates.protectedObject(target.id, target.label),
    ]);
    this.core.handles.set(`${target.id.toString('hex')}/${pkcs11js.CKO_PUBLIC_KEY}`, h);
    return h;
  }
}

/** DER OCTET STRING around an EC point, as CKA_EC_POINT holds it. */
function derOctetString(point: Buffer): Buffer {
  const len = point.length < 0x80 ? Buffer.from([point.length]) : Buffer.from([0x81, point.length]);
  return Buffer.concat([Buffer.from([0x04]), len, point]);
}
