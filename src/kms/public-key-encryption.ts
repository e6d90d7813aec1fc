import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import { Errors } from '../errors.js';
import { HASH_BYTES } from '../hsm/asymmetric.js';
import { AuthenticationFailed } from '../hsm/token.js';
import type { KeyMaterialRecord, KeyRecord } from '../store/types.js';
import type { KmsDeps, RequestContext } from './context.js';
import { ENCRYPTION_ALGORITHMS, isRsa, kindOf, requireAlgorithm, specInfo, type EncryptionAlgorithm } from './key-specs.js';
import { checkedKey } from './key-use.js';
import { dryRunStop } from './request-flags.js';
import { tokenFor } from './token-for.js';

/**
 * Encrypt and Decrypt with RSA ENCRYPT_DECRYPT keys (RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256).
 * The ciphertext is the bare RSA ciphertext, exactly as AWS returns it, so anyone holding the
 * public key (GetPublicKey) can produce one; Decrypt (and ReEncrypt from such a key) therefore
 * needs the key named.
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

/** An RSA encryption key checked for one call: authorized, usable, its algorithm and current material. */
export interface RsaEncryptionKey {
  key: KeyRecord;
  material: KeyMaterialRecord;
  algorithm: { name: EncryptionAlgorithm; hash: 'sha1' | 'sha256' };
}

/**
 * The checks of an RSA encryption call, in AWS's order: authorize, usage, state, algorithm, no
 * encryption context. `action` is Encrypt, Decrypt, ReEncryptFrom or ReEncryptTo.
 */
export function rsaEncryptionKey(
  deps: KmsDeps, ctx: RequestContext, key: KeyRecord, action: string, algorithm: string | undefined, ec: Record<string, string> | undefined,
): RsaEncryptionKey {
  const { material } = checkedKey(deps, ctx, key, action, 'ENCRYPT_DECRYPT');
  const checked = { key, material, algorithm: oaepHash(key, algorithm) };
  noContext(ec);
  return checked;
}

/** RFC 8017 §7.1.1: at most k - 2·hLen - 2 bytes (RSA_2048: 214 with SHA-1, 190 with SHA-256). */
export function checkPlaintextFits(k: RsaEncryptionKey, plaintext: Buffer): void {
  const max = modulusBytes(k.key) - 2 * HASH_BYTES[k.algorithm.hash] - 2;
  if (plaintext.length > max) {
    throw Errors.validation(`Plaintext is too long: ${k.algorithm.name} with ${k.key.keySpec} encrypts at most ${max} bytes.`);
  }
}

/**
 * A public-key operation: done here with the public half the token holds (SoftHSM2's
 * CKM_RSA_PKCS_OAEP takes SHA-1 only), byte-for-byte what any RSA-OAEP implementation produces.
 */
export async function rsaEncrypt(deps: KmsDeps, k: RsaEncryptionKey, plaintext: Buffer): Promise<Buffer> {
  checkPlaintextFits(k, plaintext);
  const spki = await tokenFor(deps, k.key).publicKeyInfo(k.material.objectId, kindOf(k.key));
  return publicEncrypt(
    { key: createPublicKey({ key: spki, format: 'der', type: 'spki' }), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: k.algorithm.hash },
    plaintext,
  );
}

/** RSA-OAEP decryption in the token; a ciphertext that does not open is InvalidCiphertextException. */
export async function rsaDecrypt(deps: KmsDeps, k: RsaEncryptionKey, ciphertext: Buffer): Promise<Buffer> {
  if (ciphertext.length !== modulusBytes(k.key)) {
    throw Errors.invalidCiphertext(`The ciphertext is not a ${k.key.keySpec} ciphertext.`);
  }
  try {
    return await tokenFor(deps, k.key).decryptOaep(k.material.objectId, k.algorithm.hash, ciphertext);
  } catch (e) {
    if (e instanceof AuthenticationFailed) {
      throw Errors.invalidCiphertext('The ciphertext could not be decrypted with this key and encryption algorithm.');
    }
    throw e;
  }
}

export async function encryptWithPublicKey(deps: KmsDeps, ctx: RequestContext, key: KeyRecord, input: EncryptInput) {
  const k = rsaEncryptionKey(deps, ctx, key, 'Encrypt', input.EncryptionAlgorithm, input.EncryptionContext);
  checkPlaintextFits(k, input.Plaintext);
  dryRunStop(input.DryRun);
  return { CiphertextBlob: await rsaEncrypt(deps, k, input.Plaintext), KeyId: key.arn, EncryptionAlgorithm: k.algorithm.name };
}

export async function decryptWithPrivateKey(deps: KmsDeps, ctx: RequestContext, key: KeyRecord, input: DecryptInput) {
  const k = rsaEncryptionKey(deps, ctx, key, 'Decrypt', input.EncryptionAlgorithm, input.EncryptionContext);
  if (input.DryRunModifiers?.includes('IGNORE_CIPHERTEXT')) dryRunStop(input.DryRun);
  if (input.CiphertextBlob.length !== modulusBytes(key)) {
    throw Errors.invalidCiphertext(`The ciphertext is not a ${key.keySpec} ciphertext.`);
  }
  dryRunStop(input.DryRun);
  return { KeyId: key.arn, Plaintext: await rsaDecrypt(deps, k, input.CiphertextBlob), EncryptionAlgorithm: k.algorithm.name };
}
