import { createHash, createPublicKey, timingSafeEqual } from 'node:crypto';
import pkcs11js from 'pkcs11js';

/**
 * What asymmetric and HMAC keys need from PKCS#11, in terms the KMS core can use without
 * knowing PKCS#11: key kinds, signing schemes and hashes in; mechanisms, parameters and
 * encodings out. Only src/hsm imports this file's PKCS#11 side.
 */

export type HashName = 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';
export type Curve = 'P-256' | 'P-384' | 'P-521' | 'secp256k1';

/** A key the token can generate, in the core's terms. */
export type KeyKind =
  | { type: 'rsa'; bits: 2048 | 3072 | 4096 }
  | { type: 'ec'; curve: Curve }
  | { type: 'hmac'; hash: HashName };

/** What a key pair's private half may do (one usage per KMS key, as AWS has it). */
export type PairUsage = 'sign' | 'decrypt' | 'derive';

export type SignScheme = 'rsa-pkcs1' | 'rsa-pss' | 'ecdsa';

/**
 * Capabilities the core asks about. Each maps to the mechanisms a token must list for it;
 * missingMechanisms() reports the names of those it lacks, for UnsupportedOperationException.
 */
export type Capability =
  | { op: 'generate'; kind: KeyKind }
  | { op: 'sign'; scheme: SignScheme }
  | { op: 'mac'; hash: HashName }
  | { op: 'oaep-decrypt' }
  | { op: 'ecdh' }
  | { op: 'export-pair'; kind: KeyKind }
  | { op: 'named'; mechanisms: [string, number][] };

/** PKCS#11 3.0/3.2 mechanisms pkcs11js has no constant for (values from the 3.0 and 3.2 headers). */
export const EXTRA_MECHANISMS = {
  CKM_EC_EDWARDS_KEY_PAIR_GEN: 0x1055,
  CKM_EDDSA: 0x1057,
  CKM_ML_DSA_KEY_PAIR_GEN: 0x1c,
  CKM_ML_DSA: 0x1d,
} as const;

const HASH_MECHANISM: Record<HashName, number> = {
  sha1: pkcs11js.CKM_SHA_1,
  sha224: pkcs11js.CKM_SHA224,
  sha256: pkcs11js.CKM_SHA256,
  sha384: pkcs11js.CKM_SHA384,
  sha512: pkcs11js.CKM_SHA512,
};
const MGF1: Record<HashName, number> = {
  sha1: pkcs11js.CKG_MGF1_SHA1,
  sha224: pkcs11js.CKG_MGF1_SHA224,
  sha256: pkcs11js.CKG_MGF1_SHA256,
  sha384: pkcs11js.CKG_MGF1_SHA384,
  sha512: pkcs11js.CKG_MGF1_SHA512,
};
const HMAC_MECHANISM: Record<HashName, [string, number]> = {
  sha1: ['CKM_SHA_1_HMAC', pkcs11js.CKM_SHA_1_HMAC],
  sha224: ['CKM_SHA224_HMAC', pkcs11js.CKM_SHA224_HMAC],
  sha256: ['CKM_SHA256_HMAC', pkcs11js.CKM_SHA256_HMAC],
  sha384: ['CKM_SHA384_HMAC', pkcs11js.CKM_SHA384_HMAC],
  sha512: ['CKM_SHA512_HMAC', pkcs11js.CKM_SHA512_HMAC],
};
export const HASH_BYTES: Record<HashName, number> = { sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64 };

/** DER of the named-curve OID, as CKA_EC_PARAMS wants it; and each curve's field size in bytes. */
export const CURVES: Record<Curve, { params: Buffer; bytes: number; oidName: string }> = {
  'P-256': { params: Buffer.from('06082a8648ce3d030107', 'hex'), bytes: 32, oidName: 'prime256v1' },
  'P-384': { params: Buffer.from('06052b81040022', 'hex'), bytes: 48, oidName: 'secp384r1' },
  'P-521': { params: Buffer.from('06052b81040023', 'hex'), bytes: 66, oidName: 'secp521r1' },
  secp256k1: { params: Buffer.from('06052b8104000a', 'hex'), bytes: 32, oidName: 'secp256k1' },
};

/** DER DigestInfo prefixes (RFC 8017 §9.2 note 1) for RSASSA-PKCS1-v1_5 over CKM_RSA_PKCS. */
const DIGEST_INFO: Partial<Record<HashName, Buffer>> = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  sha512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

const M = (name: keyof typeof pkcs11js): [string, number] => [name, pkcs11js[name] as number];

/** The mechanisms a capability needs; any one of an inner list's alternatives is enough. */
export function mechanismsFor(c: Capability): [string, number][][] {
  switch (c.op) {
    case 'generate':
    case 'export-pair': {
      const gen: [string, number][][] =
        c.kind.type === 'rsa'
          ? [[M('CKM_RSA_PKCS_KEY_PAIR_GEN')]]
          : c.kind.type === 'ec'
            ? [[M('CKM_EC_KEY_PAIR_GEN')]]
            : [[M('CKM_GENERIC_SECRET_KEY_GEN')]];
      // RFC 5649 wrap is numbered 0x210A (SoftHSM2) or 0x210B (NSS, YubiHSM); the profile says which one is used.
      return c.op === 'export-pair' ? [...gen, [M('CKM_AES_KEY_WRAP_PAD'), ['CKM_AES_KEY_WRAP_KWP', 0x210b]]] : gen;
    }
    case 'sign':
      return c.scheme === 'rsa-pkcs1'
        ? [[M('CKM_RSA_PKCS')]]
        : c.scheme === 'rsa-pss'
          ? [[M('CKM_RSA_PKCS_PSS')]]
          : [[M('CKM_ECDSA')]];
    case 'mac':
      return [[HMAC_MECHANISM[c.hash]]];
    case 'oaep-decrypt':
      // Native OAEP where the module takes the hash; raw RSA plus OAEP decoding here otherwise.
      return [[M('CKM_RSA_PKCS_OAEP'), M('CKM_RSA_X_509')]];
    case 'ecdh':
      return [[M('CKM_ECDH1_DERIVE')]];
    case 'named':
      return c.mechanisms.map((m) => [m]);
  }
}

export function keyGenMechanism(kind: KeyKind): pkcs11js.Mechanism {
  if (kind.type === 'rsa') return { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
  if (kind.type === 'ec') return { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN };
  return { mechanism: pkcs11js.CKM_GENERIC_SECRET_KEY_GEN };
}

/** Attributes that say what kind of key pair to make (public template side). */
export function pairShape(kind: KeyKind): pkcs11js.Template {
  if (kind.type === 'rsa') {
    return [
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
      { type: pkcs11js.CKA_MODULUS_BITS, value: kind.bits },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    ];
  }
  if (kind.type === 'ec') {
    return [
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
      { type: pkcs11js.CKA_EC_PARAMS, value: CURVES[kind.curve].params },
    ];
  }
  throw new Error('not a key pair');
}

export function pairKeyType(kind: KeyKind): number {
  return kind.type === 'rsa' ? pkcs11js.CKK_RSA : pkcs11js.CKK_EC;
}

/** The mechanism and the token's input for signing a digest with a scheme. */
export function signMechanism(scheme: SignScheme, hash: HashName, digest: Buffer): { mech: pkcs11js.Mechanism; input: Buffer } {
  switch (scheme) {
    case 'rsa-pkcs1': {
      const prefix = DIGEST_INFO[hash];
      if (!prefix) throw new Error(`no DigestInfo for ${hash}`);
      return { mech: { mechanism: pkcs11js.CKM_RSA_PKCS }, input: Buffer.concat([prefix, digest]) };
    }
    case 'rsa-pss':
      return {
        mech: {
          mechanism: pkcs11js.CKM_RSA_PKCS_PSS,
          // AWS KMS uses a salt as long as the digest.
          parameter: {
            type: pkcs11js.CK_PARAMS_RSA_PSS, hashAlg: HASH_MECHANISM[hash], mgf: MGF1[hash], saltLen: HASH_BYTES[hash],
          } as pkcs11js.RsaPSS,
        },
        input: digest,
      };
    case 'ecdsa':
      return { mech: { mechanism: pkcs11js.CKM_ECDSA }, input: digest };
  }
}

export function hmacMechanism(hash: HashName): pkcs11js.Mechanism {
  return { mechanism: HMAC_MECHANISM[hash][1] };
}

export function oaepMechanism(hash: HashName): pkcs11js.Mechanism {
  return {
    mechanism: pkcs11js.CKM_RSA_PKCS_OAEP,
    parameter: {
      type: pkcs11js.CK_PARAMS_RSA_OAEP, hashAlg: HASH_MECHANISM[hash], mgf: MGF1[hash], source: 1 /* CKZ_DATA_SPECIFIED */,
    } as pkcs11js.RsaOAEP,
  };
}

// ---------------------------------------------------------------------------------------------
// Encodings

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  return Buffer.from([0x82, n >> 8, n & 0xff]);
}

function derInteger(unsigned: Buffer): Buffer {
  let i = 0;
  while (i < unsigned.length - 1 && unsigned[i] === 0) i++;
  let v = unsigned.subarray(i);
  if ((v[0] as number) & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return Buffer.concat([Buffer.from([0x02]), derLength(v.length), v]);
}

/** PKCS#11 gives ECDSA signatures as r‖s; AWS (and X.509, JCA, OpenSSL) use DER SEQUENCE { r, s }. */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  const body = Buffer.concat([derInteger(raw.subarray(0, half)), derInteger(raw.subarray(half))]);
  return Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
}

/**
 * Strict DER SEQUENCE { INTEGER r, INTEGER s } → r‖s of the curve's size, or undefined when
 * the bytes are not a well-formed signature of that size (which then verifies as invalid).
 */
export function ecdsaDerToRaw(der: Buffer, size: number): Buffer | undefined {
  let at = 0;
  const readLength = (): number | undefined => {
    const first = der[at++];
    if (first === undefined) return undefined;
    if (first < 0x80) return first;
    if (first === 0x81) {
      const n = der[at++];
      return n !== undefined && n >= 0x80 ? n : undefined;
    }
    return undefined;
  };
  const readInteger = (): Buffer | undefined => {
    if (der[at++] !== 0x02) return undefined;
    const len = readLength();
    if (len === undefined || len === 0 || at + len > der.length) return undefined;
    const v = der.subarray(at, at + len);
    at += len;
    if ((v[0] as number) & 0x80) return undefined; // negative
    if (v.length > 1 && v[0] === 0 && !((v[1] as number) & 0x80)) return undefined; // not minimal
    const unsigned = v[0] === 0 ? v.subarray(1) : v;
    if (unsigned.length > size) return undefined;
    return Buffer.concat([Buffer.alloc(size - unsigned.length), unsigned]);
  };
  if (der[at++] !== 0x30) return undefined;
  const total = readLength();
  if (total === undefined || at + total !== der.length) return undefined;
  const r = readInteger();
  const s = readInteger();
  if (!r || !s || at !== der.length) return undefined;
  return Buffer.concat([r, s]);
}

/** CKA_EC_POINT is a DER OCTET STRING around the point on most modules, the bare point on a few. */
export function unwrapEcPoint(value: Buffer, curve: Curve): Buffer {
  const pointLength = 1 + 2 * CURVES[curve].bytes;
  if (value.length === pointLength && value[0] === 0x04) return value;
  if (value[0] === 0x04) {
    const len = value[1] as number;
    const start = len === 0x81 ? 3 : 2;
    const point = value.subarray(start);
    if (point.length === pointLength && point[0] === 0x04) return point;
  }
  throw new Error('unexpected CKA_EC_POINT encoding');
}

/** DER SubjectPublicKeyInfo from an RSA modulus and exponent. */
export function rsaSpki(modulus: Buffer, exponent: Buffer): Buffer {
  return createPublicKey({
    key: { kty: 'RSA', n: modulus.toString('base64url'), e: exponent.toString('base64url') },
    format: 'jwk',
  }).export({ type: 'spki', format: 'der' });
}

/** DER SubjectPublicKeyInfo from an uncompressed EC point. */
export function ecSpki(curve: Curve, point: Buffer): Buffer {
  const n = CURVES[curve].bytes;
  return createPublicKey({
    key: {
      kty: 'EC', crv: curve,
      x: point.subarray(1, 1 + n).toString('base64url'), y: point.subarray(1 + n).toString('base64url'),
    },
    format: 'jwk',
  }).export({ type: 'spki', format: 'der' });
}

function mgf1(hash: HashName, seed: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  const counter = Buffer.alloc(4);
  for (let done = 0, i = 0; done < length; i++) {
    counter.writeUInt32BE(i);
    const block = createHash(hash).update(seed).update(counter).digest();
    done += block.copy(out, done);
  }
  return out;
}

/**
 * EME-OAEP decoding (RFC 8017 §7.1.2 step 3) with an empty label, for modules whose
 * CKM_RSA_PKCS_OAEP takes SHA-1 only (SoftHSM2 2.6): the token does the raw RSA private-key
 * operation (CKM_RSA_X_509) and this removes the padding. Every check runs whatever the
 * outcome and the caller gets one answer for every failure, so it cannot tell why a ciphertext
 * failed (Manger's attack needs that). JavaScript gives no constant-time guarantee; this avoids
 * early exits and data-dependent lookups, which is the best it can do.
 */
export function oaepDecode(hash: HashName, em: Buffer, k: number): Buffer | undefined {
  const hLen = HASH_BYTES[hash];
  if (em.length !== k || k < 2 * hLen + 2) return undefined;
  const maskedSeed = em.subarray(1, 1 + hLen);
  const maskedDb = em.subarray(1 + hLen);
  const seedMask = mgf1(hash, maskedDb, hLen);
  const seed = Buffer.alloc(hLen);
  for (let i = 0; i < hLen; i++) seed[i] = (maskedSeed[i] as number) ^ (seedMask[i] as number);
  const dbMask = mgf1(hash, seed, maskedDb.length);
  const db = Buffer.alloc(maskedDb.length);
  for (let i = 0; i < db.length; i++) db[i] = (maskedDb[i] as number) ^ (dbMask[i] as number);
  const lHash = createHash(hash).digest();
  let good = timingSafeEqual(db.subarray(0, hLen), lHash) ? 1 : 0;
  good &= em[0] === 0 ? 1 : 0;
  // Find the 0x01 separator after the zero padding without branching on secret bytes.
  let lookingForIndex = 1;
  let index = 0;
  let invalid = 0;
  for (let i = hLen; i < db.length; i++) {
    const b = db[i] as number;
    const isOne = b === 1 ? 1 : 0;
    const isZero = b === 0 ? 1 : 0;
    index = lookingForIndex & isOne ? i : index;
    invalid |= lookingForIndex & ~isOne & ~isZero & 1;
    lookingForIndex &= ~isOne & 1;
  }
  good &= ~invalid & ~lookingForIndex & 1;
  seed.fill(0);
  if (!good) {
    db.fill(0);
    return undefined;
  }
  const message = Buffer.from(db.subarray(index + 1));
  db.fill(0);
  return message;
}
