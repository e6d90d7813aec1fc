import { Errors } from '../errors.js';
import type { ImportedKind } from '../hsm/token.js';
import type { KeyRecord } from '../store/types.js';
import { kindOf } from './key-specs.js';

/**
 * Which key specs take imported material (issue #12), what the material becomes in the token,
 * and which wrapping algorithms can carry it (AWS KMS Developer Guide, "Importing key material":
 * asymmetric private keys are PKCS#8 DER, too long for RSAES_OAEP, so only RSA_AES_KEY_WRAP).
 */

/** AWS's accepted HMAC key material lengths, in bytes, per spec. */
const HMAC_BYTES: Record<string, [number, number]> = {
  HMAC_224: [28, 64], HMAC_256: [32, 64], HMAC_384: [48, 128], HMAC_512: [64, 128],
};

const ECC_SPECS = new Set(['ECC_NIST_P256', 'ECC_NIST_P384', 'ECC_NIST_P521', 'ECC_SECG_P256K1']);

/** Refuses at CreateKey (Origin EXTERNAL) the key specs and usages this key store cannot import into. */
export function checkImportableSpec(keySpec: string, keyUsage: string): void {
  if (keySpec === 'SYMMETRIC_DEFAULT' || keySpec in HMAC_BYTES || keySpec.startsWith('RSA_')) return;
  if (ECC_SPECS.has(keySpec)) {
    if (keyUsage === 'SIGN_VERIFY') return;
    throw Errors.unsupported(`Importing key material for ${keySpec} keys with KeyUsage ${keyUsage} is not supported by this key store yet; SIGN_VERIFY is.`);
  }
  throw Errors.unsupported(`Importing key material for KeySpec ${keySpec} is not supported by this key store.`);
}

/** What imported material of this key becomes in the token; 'aes' for SYMMETRIC_DEFAULT. */
export function importedKindOf(key: KeyRecord): ImportedKind | 'aes' {
  if (key.keySpec === 'SYMMETRIC_DEFAULT') return 'aes';
  const range = HMAC_BYTES[key.keySpec];
  const kind = kindOf(key);
  if (range && kind.type === 'hmac') return { type: 'hmac', hash: kind.hash, minBytes: range[0], maxBytes: range[1] };
  if (kind.type === 'rsa') return { type: 'rsa', bits: kind.bits, usage: key.keyUsage === 'SIGN_VERIFY' ? 'sign' : 'decrypt' };
  if (kind.type === 'ec') return { type: 'ec', curve: kind.curve };
  throw Errors.unsupported(`Importing key material for KeySpec ${key.keySpec} is not supported by this key store.`);
}

/** Asymmetric private keys need RSA_AES_KEY_WRAP (PKCS#8 does not fit into one RSA-OAEP block). */
export function checkWrappingFor(key: KeyRecord, algorithm: string): void {
  if ((key.keySpec.startsWith('RSA_') || ECC_SPECS.has(key.keySpec)) && !algorithm.startsWith('RSA_AES_KEY_WRAP')) {
    throw Errors.validation(
      `${algorithm} cannot wrap the private key material of ${key.keySpec} keys. Use RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256.`,
    );
  }
}

/** The refusal for material that is not what the key's spec needs. */
export function wrongMaterial(key: KeyRecord): ReturnType<typeof Errors.incorrectKeyMaterial> {
  const range = HMAC_BYTES[key.keySpec];
  if (key.keySpec === 'SYMMETRIC_DEFAULT') return Errors.incorrectKeyMaterial('The key material for a SYMMETRIC_DEFAULT key must be 256 bits (32 bytes).');
  if (range) return Errors.incorrectKeyMaterial(`The key material for a ${key.keySpec} key must be ${range[0]} to ${range[1]} bytes.`);
  const what = key.keySpec.startsWith('RSA_') ? 'an RSA private key of that size' : 'an EC private key on that curve';
  return Errors.incorrectKeyMaterial(`The key material for a ${key.keySpec} ${key.keyUsage} key must be ${what} in PKCS#8 DER.`);
}
