import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import { Errors } from '../errors.js';
import { HASH_BYTES } from '../hsm/asymmetric.js';
import { AuthenticationFailed } from '../hsm/token.js';
import type { KeyRecord } from '../store/types.js';
import type { KmsDeps, RequestContext } from './context.js';
import { resolveKey } from './key-ref.js';
import { ENCRYPTION_ALGORITHMS, isRsa, kindOf, requireAlgorithm, specInfo, type EncryptionAlgorithm } from './key-specs.js';
import { checkedKey } from './key-use.js';
import { dryRunStop } from './request-flags.js';
import { tokenFor } from './token-for.js';

/**
 * Encrypt and Decrypt with RSA ENCRYPT_DECRYPT keys (RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256).
 * The ciphertext is the bare RSA ciphertext, exactly as AWS returns it, so anyone holding the
 * public key (GetPublicKey) can produce one; Decrypt therefore needs KeyId.
 */

interface EncryptInput {
  Plaintext: Buffer;
  EncryptionContext?: Record<string, string> | undefined;
  EncryptionAlgorithm?: string | undefined;
  DryRun?: boolean | undefined;
}

interface DecryptInput {
  CiphertextBlob: Buffer;
  EncryptionContext?: Record<string, string> | undefined;
  EncryptionAlgorithm?: string | undefined;
  DryRun?: boolean | undefined;
  DryRunModifiers?: string[] | undefined;
}

function modulusBytes(key: KeyRecord): number {
  const kind = kindOf(key);
  if (kind.type !== 'rsa') throw Errors.internal(`${key.keySpec} is not an RSA key spec.`);
  return kind.bits / 8;
}

/** The algorithm must be one of the key's (AWS: EncryptionAlgorithm defaults to SYMMETRIC_DEFAULT, which RSA keys refuse). */
function oaepHash(key: KeyRecord, algorithm: string | undefined) {
  const name = algorithm ?? 'SYMMETRIC_DEFAULT';
  requireAlgorithm(key, name, specInfo(key.keySpec).encryption);
  return { name: name as EncryptionAlgorithm, hash: ENCRYPTION_ALGORITHMS[name as EncryptionAlgorithm] };
}

function noContext(ec: Record<string, string> | undefined): void {
  if (ec && Object.keys(ec).length > 0) {
    throw Errors.validation('EncryptionContext is not supported when encrypting/decrypting with asymmetric CMKs.');
  }
}

export async function encryptWithPublicKey(deps: KmsDeps, ctx: RequestContext, key: KeyRecord, input: EncryptInput) {
  const { material } = checkedKey(deps, ctx, key, 'Encrypt', 'ENCRYPT_DECRYPT');
  const algorithm = oaepHash(key, input.EncryptionAlgorithm);
  noContext(input.EncryptionContext);
  // RFC 8017 §7.1.1: at most k - 2·hLen - 2 bytes (RSA_2048: 214 with SHA-1, 190 with SHA-256).
  const max = modulusBytes(key) - 2 * HASH_BYTES[algorithm.hash] - 2;
  if (input.Plaintext.length > max) {
    throw Errors.validation(`Plaintext is too long: ${algorithm.name} with ${key.keySpec} encrypts at most ${max} bytes.`);
  }
  dryRunStop(input.DryRun);
  // A public-key operation: done here with the public half the token holds (SoftHSM2's
  // CKM_RSA_PKCS_OAEP takes SHA-1 only), byte-for-byte what any RSA-OAEP implementation produces.
  const spki = await tokenFor(deps, key).publicKeyInfo(material.objectId, kindOf(key));
  const ciphertext = publicEncrypt(
    { key: createPublicKey({ key: spki, format: 'der', type: 'spki' }), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: algorithm.hash },
    input.Plaintext,
  );
  return { CiphertextBlob: ciphertext, KeyId: key.arn, EncryptionAlgorithm: algorithm.name };
}

export async function decryptWithPrivateKey(deps: KmsDeps, ctx: RequestContext, key: KeyRecord, input: DecryptInput) {
  const { material } = checkedKey(deps, ctx, key, 'Decrypt', 'ENCRYPT_DECRYPT');
  const algorithm = oaepHash(key, input.EncryptionAlgorithm);
  noContext(input.EncryptionContext);
  if (input.DryRunModifiers?.includes('IGNORE_CIPHERTEXT')) dryRunStop(input.DryRun);
  if (input.CiphertextBlob.length !== modulusBytes(key)) {
    throw Errors.invalidCiphertext(`The ciphertext is not a ${key.keySpec} ciphertext.`);
  }
  dryRunStop(input.DryRun);
  try {
    const plaintext = await tokenFor(deps, key).decryptOaep(material.objectId, algorithm.hash, input.CiphertextBlob);
    return { KeyId: key.arn, Plaintext: plaintext, EncryptionAlgorithm: algorithm.name };
  } catch (e) {
    if (e instanceof AuthenticationFailed) {
      throw Errors.invalidCiphertext('The ciphertext could not be decrypted with this key and encryption algorithm.');
    }
    throw e;
  }
}

/**
 * AWS's ReEncrypt also takes RSA encryption keys as source or destination; this key store does
 * not implement that yet and says so, rather than answering with a misleading usage error.
 */
export function refuseRsaReEncrypt(deps: KmsDeps, ctx: RequestContext, refs: (string | undefined)[]): void {
  for (const ref of refs) {
    if (ref === undefined) continue;
    const key = resolveKey(deps, ctx, ref);
    if (isRsa(key) && key.keyUsage === 'ENCRYPT_DECRYPT') {
      throw Errors.unsupported(`ReEncrypt with RSA encryption keys (${key.arn}) is not supported by this key store yet.`);
    }
  }
}
