import { Errors } from '../errors.js';
import { EXTRA_MECHANISMS, type Capability, type HashName, type KeyKind, type SignScheme } from '../hsm/asymmetric.js';
import type { KeyRecord } from '../store/types.js';
import type { KmsDeps } from './context.js';
import { tokenFor } from './token-for.js';

/**
 * Key specs, the usages each allows, the algorithms each offers, and what each needs from the
 * token. The single place that knows which KeySpec is which kind of key.
 */

export type KeyUsage = 'ENCRYPT_DECRYPT' | 'SIGN_VERIFY' | 'GENERATE_VERIFY_MAC' | 'KEY_AGREEMENT';

interface SpecInfo {
  /** What the token generates; undefined for SYMMETRIC_DEFAULT (AES-256, see material.ts) and unsupported specs. */
  kind?: KeyKind;
  usages: readonly KeyUsage[];
  signing?: readonly SigningAlgorithm[];
  encryption?: readonly EncryptionAlgorithm[];
  agreement?: readonly string[];
  mac?: readonly MacAlgorithm[];
  /** For specs p11kms cannot serve: the mechanisms they need, to name in the refusal. */
  unsupported?: { needs: [string, number | undefined][]; why?: string };
}

export const SIGNING_ALGORITHMS = {
  RSASSA_PKCS1_V1_5_SHA_256: { scheme: 'rsa-pkcs1', hash: 'sha256' },
  RSASSA_PKCS1_V1_5_SHA_384: { scheme: 'rsa-pkcs1', hash: 'sha384' },
  RSASSA_PKCS1_V1_5_SHA_512: { scheme: 'rsa-pkcs1', hash: 'sha512' },
  RSASSA_PSS_SHA_256: { scheme: 'rsa-pss', hash: 'sha256' },
  RSASSA_PSS_SHA_384: { scheme: 'rsa-pss', hash: 'sha384' },
  RSASSA_PSS_SHA_512: { scheme: 'rsa-pss', hash: 'sha512' },
  ECDSA_SHA_256: { scheme: 'ecdsa', hash: 'sha256' },
  ECDSA_SHA_384: { scheme: 'ecdsa', hash: 'sha384' },
  ECDSA_SHA_512: { scheme: 'ecdsa', hash: 'sha512' },
} as const satisfies Record<string, { scheme: SignScheme; hash: HashName }>;
export type SigningAlgorithm = keyof typeof SIGNING_ALGORITHMS;

export const ENCRYPTION_ALGORITHMS = {
  RSAES_OAEP_SHA_1: 'sha1',
  RSAES_OAEP_SHA_256: 'sha256',
} as const satisfies Record<string, HashName>;
export type EncryptionAlgorithm = keyof typeof ENCRYPTION_ALGORITHMS;

export const MAC_ALGORITHMS = {
  HMAC_SHA_224: 'sha224',
  HMAC_SHA_256: 'sha256',
  HMAC_SHA_384: 'sha384',
  HMAC_SHA_512: 'sha512',
} as const satisfies Record<string, HashName>;
export type MacAlgorithm = keyof typeof MAC_ALGORITHMS;

const RSA_SIGNING: readonly SigningAlgorithm[] = [
  'RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_384', 'RSASSA_PKCS1_V1_5_SHA_512',
  'RSASSA_PSS_SHA_256', 'RSASSA_PSS_SHA_384', 'RSASSA_PSS_SHA_512',
];
const RSA_ENCRYPTION: readonly EncryptionAlgorithm[] = ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'];

const rsa = (bits: 2048 | 3072 | 4096): SpecInfo => ({
  kind: { type: 'rsa', bits },
  usages: ['ENCRYPT_DECRYPT', 'SIGN_VERIFY'],
  signing: RSA_SIGNING,
  encryption: RSA_ENCRYPTION,
});
const nist = (curve: 'P-256' | 'P-384' | 'P-521', alg: SigningAlgorithm): SpecInfo => ({
  kind: { type: 'ec', curve },
  usages: ['SIGN_VERIFY', 'KEY_AGREEMENT'],
  signing: [alg],
  agreement: ['ECDH'],
});
const hmac = (hash: HashName, alg: MacAlgorithm): SpecInfo => ({
  kind: { type: 'hmac', hash },
  usages: ['GENERATE_VERIFY_MAC'],
  mac: [alg],
});

const SPECS: Record<string, SpecInfo> = {
  SYMMETRIC_DEFAULT: { usages: ['ENCRYPT_DECRYPT'] },
  RSA_2048: rsa(2048),
  RSA_3072: rsa(3072),
  RSA_4096: rsa(4096),
  ECC_NIST_P256: nist('P-256', 'ECDSA_SHA_256'),
  ECC_NIST_P384: nist('P-384', 'ECDSA_SHA_384'),
  ECC_NIST_P521: nist('P-521', 'ECDSA_SHA_512'),
  ECC_SECG_P256K1: { kind: { type: 'ec', curve: 'secp256k1' }, usages: ['SIGN_VERIFY'], signing: ['ECDSA_SHA_256'] },
  HMAC_224: hmac('sha224', 'HMAC_SHA_224'),
  HMAC_256: hmac('sha256', 'HMAC_SHA_256'),
  HMAC_384: hmac('sha384', 'HMAC_SHA_384'),
  HMAC_512: hmac('sha512', 'HMAC_SHA_512'),
  SM2: {
    usages: ['SIGN_VERIFY', 'ENCRYPT_DECRYPT', 'KEY_AGREEMENT'],
    unsupported: {
      needs: [['an SM2 key-pair generation mechanism (vendor-defined; PKCS#11 has no standard one)', undefined]],
    },
  },
  ML_DSA_44: mlDsa(),
  ML_DSA_65: mlDsa(),
  ML_DSA_87: mlDsa(),
  ECC_NIST_EDWARDS25519: {
    usages: ['SIGN_VERIFY'],
    unsupported: {
      needs: [
        ['CKM_EC_EDWARDS_KEY_PAIR_GEN', EXTRA_MECHANISMS.CKM_EC_EDWARDS_KEY_PAIR_GEN],
        ['CKM_EDDSA', EXTRA_MECHANISMS.CKM_EDDSA],
      ],
      why: 'p11kms does not implement EdDSA yet (ED25519_PH_SHA_512 needs CK_EDDSA_PARAMS, which pkcs11js cannot pass)',
    },
  },
};

function mlDsa(): SpecInfo {
  return {
    usages: ['SIGN_VERIFY'],
    unsupported: {
      needs: [
        ['CKM_ML_DSA_KEY_PAIR_GEN', EXTRA_MECHANISMS.CKM_ML_DSA_KEY_PAIR_GEN],
        ['CKM_ML_DSA', EXTRA_MECHANISMS.CKM_ML_DSA],
      ],
      why: 'p11kms does not implement ML-DSA yet (PKCS#11 3.2)',
    },
  };
}

export function specInfo(keySpec: string): SpecInfo {
  const info = SPECS[keySpec];
  if (!info) throw Errors.unsupported(`KeySpec ${keySpec} is not supported by this key store.`);
  return info;
}

/** The key kind the token holds for an asymmetric or HMAC KMS key. */
export function kindOf(key: KeyRecord): KeyKind {
  const kind = specInfo(key.keySpec).kind;
  if (!kind) throw Errors.internal(`KeySpec ${key.keySpec} has no asymmetric or HMAC key material.`);
  return kind;
}

export const isRsa = (key: KeyRecord): boolean => key.keySpec.startsWith('RSA_');

/** AWS rotates only symmetric encryption keys (automatic and on-demand); others are refused. */
export function supportsRotation(key: Pick<KeyRecord, 'keySpec'>): boolean {
  return key.keySpec === 'SYMMETRIC_DEFAULT';
}

function unsupported(deps: KmsDeps, what: string, capabilities: Capability[]): void {
  const missing = [...new Set(capabilities.flatMap((c) => deps.token.missingMechanisms(c)))];
  if (missing.length) {
    throw Errors.unsupported(`${what} needs ${missing.join(', ')}, which token '${deps.token.label}' does not offer.`);
  }
}

/**
 * CreateKey's checks for a KeySpec and KeyUsage: the combination must be one AWS allows
 * (ValidationException otherwise) and the token must have what the key needs
 * (UnsupportedOperationException naming the missing mechanisms otherwise). Returns the usage.
 */
export function checkKeySpec(deps: KmsDeps, keySpec: string, requestedUsage: string | undefined): KeyUsage {
  const info = specInfo(keySpec);
  const usage = (requestedUsage ?? 'ENCRYPT_DECRYPT') as KeyUsage;
  if (!info.usages.includes(usage)) {
    throw Errors.validation(`KeyUsage ${usage} is not compatible with KeySpec ${keySpec}`);
  }
  if (info.unsupported) {
    const names = info.unsupported.needs.map(([name]) => name);
    const numbered = info.unsupported.needs.filter((n): n is [string, number] => n[1] !== undefined);
    const missing = numbered.length === names.length ? deps.token.missingMechanisms({ op: 'named', mechanisms: numbered }) : names;
    if (missing.length) {
      throw Errors.unsupported(`KeySpec ${keySpec} needs ${missing.join(' and ')}, which token '${deps.token.label}' does not offer.`);
    }
    throw Errors.unsupported(`KeySpec ${keySpec} is not supported: ${info.unsupported.why ?? 'not implemented'}.`);
  }
  if (!info.kind) return usage;
  const needs: Capability[] = [{ op: 'generate', kind: info.kind }];
  if (usage === 'SIGN_VERIFY') {
    // The key must be able to do at least one of its signing algorithms.
    const schemes = new Set((info.signing ?? []).map((a) => SIGNING_ALGORITHMS[a].scheme));
    const usable = [...schemes].filter((scheme) => deps.token.missingMechanisms({ op: 'sign', scheme }).length === 0);
    if (!usable.length) needs.push(...[...schemes].map((scheme): Capability => ({ op: 'sign', scheme })));
  }
  if (usage === 'ENCRYPT_DECRYPT') needs.push({ op: 'oaep-decrypt' });
  if (usage === 'KEY_AGREEMENT') needs.push({ op: 'ecdh' });
  if (usage === 'GENERATE_VERIFY_MAC' && info.kind.type === 'hmac') needs.push({ op: 'mac', hash: info.kind.hash });
  unsupported(deps, `KeySpec ${keySpec} with KeyUsage ${usage}`, needs);
  return usage;
}

/** Generates the token object(s) of one key-material version for an asymmetric or HMAC key. */
export async function generateAsymmetricMaterial(deps: KmsDeps, key: KeyRecord, objectId: Buffer, label: string): Promise<void> {
  const kind = kindOf(key);
  if (kind.type === 'hmac') {
    // AWS's HMAC keys are as long as the digest: 224, 256, 384 or 512 bits.
    await tokenFor(deps, key).generateHmacKey(objectId, label, Number(key.keySpec.slice(5)) / 8);
    return;
  }
  const usage = key.keyUsage === 'SIGN_VERIFY' ? 'sign' : key.keyUsage === 'ENCRYPT_DECRYPT' ? 'decrypt' : 'derive';
  await tokenFor(deps, key).generateKeyPair(objectId, label, kind, usage);
}

/**
 * The algorithm lists DescribeKey and GetPublicKey show for a key: only those that fit its
 * usage and that the token can perform.
 */
export function keyAlgorithms(deps: KmsDeps, key: Pick<KeyRecord, 'keySpec' | 'keyUsage'>) {
  const info = SPECS[key.keySpec];
  const out: {
    EncryptionAlgorithms?: string[];
    SigningAlgorithms?: string[];
    KeyAgreementAlgorithms?: string[];
    MacAlgorithms?: string[];
  } = {};
  if (!info) return out;
  const can = (c: Capability) => deps.token.missingMechanisms(c).length === 0;
  switch (key.keyUsage) {
    case 'ENCRYPT_DECRYPT':
      out.EncryptionAlgorithms = key.keySpec === 'SYMMETRIC_DEFAULT' ? ['SYMMETRIC_DEFAULT'] : (info.encryption ?? []).filter(() => can({ op: 'oaep-decrypt' }));
      break;
    case 'SIGN_VERIFY':
      out.SigningAlgorithms = (info.signing ?? []).filter((a) => can({ op: 'sign', scheme: SIGNING_ALGORITHMS[a].scheme }));
      break;
    case 'KEY_AGREEMENT':
      out.KeyAgreementAlgorithms = (info.agreement ?? []).filter(() => can({ op: 'ecdh' }));
      break;
    case 'GENERATE_VERIFY_MAC':
      out.MacAlgorithms = (info.mac ?? []).filter((a) => can({ op: 'mac', hash: MAC_ALGORITHMS[a] }));
      break;
  }
  return out;
}

/** InvalidKeyUsageException unless the key has this usage (AWS's wording). */
export function requireUsage(key: KeyRecord, usage: KeyUsage, operation: string): void {
  if (key.keyUsage !== usage) {
    throw Errors.invalidKeyUsage(`${key.arn} key usage is ${key.keyUsage} which is not valid for ${operation}.`);
  }
}

/** InvalidKeyUsageException unless the key's spec offers the algorithm (AWS's wording). */
export function requireAlgorithm(key: KeyRecord, algorithm: string, offered: readonly string[] | undefined): void {
  if (!offered?.includes(algorithm)) {
    throw Errors.invalidKeyUsage(`Algorithm ${algorithm} is incompatible with key spec ${key.keySpec}.`);
  }
}
