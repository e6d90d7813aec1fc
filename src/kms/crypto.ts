import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import { AuthenticationFailed } from '../hsm/token.js';
import type { KeyMaterialRecord, KeyRecord } from '../store/types.js';
import { encodeCiphertext, encodeHeader, formatFor, parseCiphertext } from './ciphertext.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { connectedStoreToken } from './key-stores.js';
import { canonicalEncryptionContext } from './encryption-context.js';
import { requireUsable, resolveKey } from './key-ref.js';
import { isRsa } from './key-specs.js';
import { materialOf } from './material.js';
import { tokenFor, withStoreState } from './token-for.js';
import {
  decryptWithPrivateKey, encryptWithPublicKey, rsaDecrypt, rsaEncrypt, rsaEncryptionKey,
} from './public-key-encryption.js';
import {
  blob, DRY_RUN, ENCRYPTION_CONTEXT, GRANT_TOKENS, KEY_ID, list, NUMBER_OF_BYTES, oneOf, RECIPIENT, str,
} from './validation.js';
import { dryRunStop, noRecipient } from './request-flags.js';

const ENCRYPTION_ALGORITHM = oneOf(['SYMMETRIC_DEFAULT', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'SM2PKE']).optional();
const DATA_KEY_SPEC = oneOf(['AES_256', 'AES_128']).optional();
const DRY_RUN_MODIFIERS = list(oneOf(['IGNORE_CIPHERTEXT']), 0, 1).optional();

type EncryptionContext = Record<string, string> | undefined;

function checkAlgorithm(key: KeyRecord, algorithm: string | undefined): void {
  if (key.keyUsage !== 'ENCRYPT_DECRYPT') {
    throw Errors.invalidKeyUsage(`${key.arn} key usage is ${key.keyUsage} which is not valid for this operation.`);
  }
  if (key.keySpec !== 'SYMMETRIC_DEFAULT') {
    throw Errors.invalidKeyUsage(`Algorithm ${algorithm ?? 'SYMMETRIC_DEFAULT'} is incompatible with key spec ${key.keySpec}.`);
  }
  if (algorithm !== undefined && algorithm !== 'SYMMETRIC_DEFAULT') {
    throw Errors.invalidKeyUsage(`The encryption algorithm ${algorithm} is not supported by ${key.arn}.`);
  }
}



/** Seals a plaintext under the key's current material. */
export async function seal(deps: KmsDeps, key: KeyRecord, plaintext: Buffer, ec: EncryptionContext) {
  const material = materialOf(deps, key, key.currentVersion);
  if (!material) throw Errors.keyUnavailable(`The key material for ${key.arn} is unavailable.`);
  const token = tokenFor(deps, key);
  // The header names the format (and so the IV length) before the token seals: it is in the AAD.
  const header = encodeHeader(key.keyId, material.version, formatFor(token.aeadShape));
  const aad = Buffer.concat([header, canonicalEncryptionContext(ec)]);
  const { iv, sealed } = await token.seal(material.objectId, aad, plaintext);
  return { blob: encodeCiphertext(header, iv, sealed), material };
}

interface Opened {
  key: KeyRecord;
  material: KeyMaterialRecord;
  plaintext: Buffer;
}

/**
 * Finds the key a blob names, checks the caller's expectations and permissions, and opens it
 * in the token. Anything wrong with the blob itself is InvalidCiphertextException.
 */
async function open(
  deps: KmsDeps,
  ctx: RequestContext,
  ciphertext: Buffer,
  ec: EncryptionContext,
  expectedKeyId: string | undefined,
  algorithm: string | undefined,
  action: string,
  dry: boolean | undefined,
): Promise<Opened> {
  const parsed = parseCiphertext(ciphertext);
  const expected = expectedKeyId === undefined ? undefined : resolveKey(deps, ctx, expectedKeyId);
  const stored = deps.store.getKey(parsed.keyId);
  const key = stored && withStoreState(deps, stored);
  if (!key || key.state === 'Creating') {
    if (expected) throw Errors.incorrectKey('The key ID in the request does not identify a KMS key that can perform this operation.');
    throw Errors.invalidCiphertext('The ciphertext refers to a KMS key that does not exist or that you cannot access.');
  }
  if (expected && expected.keyId !== key.keyId) {
    throw Errors.incorrectKey('The key ID in the request does not identify a KMS key that can perform this operation.');
  }
  authorize(ctx, action, key);
  checkAlgorithm(key, algorithm);
  requireUsable(key);
  const material = materialOf(deps, key, parsed.version);
  if (!material) throw Errors.invalidCiphertext('The ciphertext names key material that does not exist.');
  dryRunStop(dry);
  const aad = Buffer.concat([parsed.header, canonicalEncryptionContext(ec)]);
  try {
    const plaintext = await tokenFor(deps, key).open(material.objectId, parsed.shape, parsed.iv, aad, parsed.sealed);
    return { key, material, plaintext };
  } catch (e) {
    if (e instanceof AuthenticationFailed) {
      throw Errors.invalidCiphertext(
        'The ciphertext could not be decrypted: it was altered, or the encryption context does not match.',
      );
    }
    throw e;
  }
}

/** Resolves, authorizes and state-checks the key for an encrypting call, in that order. */
export function encryptingKey(deps: KmsDeps, ctx: RequestContext, ref: string, action: string, algorithm?: string) {
  const key = resolveKey(deps, ctx, ref);
  authorize(ctx, action, key);
  checkAlgorithm(key, algorithm);
  requireUsable(key);
  return key;
}

export const Encrypt = operation(
  z.object({
    KeyId: KEY_ID,
    Plaintext: blob(1, 4096),
    EncryptionContext: ENCRYPTION_CONTEXT,
    GrantTokens: GRANT_TOKENS,
    EncryptionAlgorithm: ENCRYPTION_ALGORITHM,
    DryRun: DRY_RUN,
  }),
  async (deps, ctx, input) => {
    const target = resolveKey(deps, ctx, input.KeyId);
    if (isRsa(target)) return encryptWithPublicKey(deps, ctx, target, input);
    const key = encryptingKey(deps, ctx, input.KeyId, 'Encrypt', input.EncryptionAlgorithm);
    dryRunStop(input.DryRun);
    const { blob: ciphertext } = await seal(deps, key, input.Plaintext, input.EncryptionContext);
    return { CiphertextBlob: ciphertext, KeyId: key.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
  },
);

export const Decrypt = operation(
  z.object({
    CiphertextBlob: blob(1, 6144),
    EncryptionContext: ENCRYPTION_CONTEXT,
    GrantTokens: GRANT_TOKENS,
    KeyId: KEY_ID.optional(),
    EncryptionAlgorithm: ENCRYPTION_ALGORITHM,
    Recipient: RECIPIENT,
    DryRun: DRY_RUN,
    DryRunModifiers: DRY_RUN_MODIFIERS,
  }),
  async (deps, ctx, input) => {
    noRecipient(input.Recipient);
    // An RSA ciphertext does not name its key, so AWS needs KeyId to decrypt one.
    const named = input.KeyId === undefined ? undefined : resolveKey(deps, ctx, input.KeyId);
    if (named && isRsa(named)) return decryptWithPrivateKey(deps, ctx, named, input);
    const opened = await open(
      deps, ctx, input.CiphertextBlob, input.EncryptionContext, input.KeyId, input.EncryptionAlgorithm, 'Decrypt', input.DryRun,
    );
    return {
      KeyId: opened.key.arn,
      Plaintext: opened.plaintext,
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      KeyMaterialId: opened.material.materialId,
    };
  },
);

export const ReEncrypt = operation(
  z.object({
    CiphertextBlob: blob(1, 6144),
    SourceEncryptionContext: ENCRYPTION_CONTEXT,
    SourceKeyId: KEY_ID.optional(),
    DestinationKeyId: KEY_ID,
    DestinationEncryptionContext: ENCRYPTION_CONTEXT,
    SourceEncryptionAlgorithm: ENCRYPTION_ALGORITHM,
    DestinationEncryptionAlgorithm: ENCRYPTION_ALGORITHM,
    GrantTokens: GRANT_TOKENS,
    DryRun: DRY_RUN,
    DryRunModifiers: DRY_RUN_MODIFIERS,
  }),
  async (deps, ctx, input) => {
    // Authorize the destination before touching the token for the source.
    const target = resolveKey(deps, ctx, input.DestinationKeyId);
    const destination = isRsa(target)
      ? rsaEncryptionKey(deps, ctx, target, 'ReEncryptTo', input.DestinationEncryptionAlgorithm, input.DestinationEncryptionContext)
      : encryptingKey(deps, ctx, input.DestinationKeyId, 'ReEncryptTo', input.DestinationEncryptionAlgorithm);
    const source = await openSource(deps, ctx, input);
    try {
      if ('algorithm' in destination) {
        return {
          CiphertextBlob: await rsaEncrypt(deps, destination, source.plaintext),
          SourceKeyId: source.key.arn,
          KeyId: destination.key.arn,
          SourceEncryptionAlgorithm: source.algorithm,
          DestinationEncryptionAlgorithm: destination.algorithm.name,
          SourceKeyMaterialId: source.materialId,
        };
      }
      const sealed = await seal(deps, destination, source.plaintext, input.DestinationEncryptionContext);
      return {
        CiphertextBlob: sealed.blob,
        SourceKeyId: source.key.arn,
        KeyId: destination.arn,
        SourceEncryptionAlgorithm: source.algorithm,
        DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        SourceKeyMaterialId: source.materialId,
        DestinationKeyMaterialId: sealed.material.materialId,
      };
    } finally {
      source.plaintext.fill(0);
    }
  },
);

interface ReEncryptSource {
  CiphertextBlob: Buffer;
  SourceKeyId?: string | undefined;
  SourceEncryptionContext?: Record<string, string> | undefined;
  SourceEncryptionAlgorithm?: string | undefined;
  DryRun?: boolean | undefined;
  DryRunModifiers?: string[] | undefined;
}

/**
 * ReEncrypt's source: a symmetric blob names its key; an RSA ciphertext does not, so AWS needs
 * SourceKeyId (and the algorithm) for it. Key material ids are AWS's for symmetric keys only.
 */
async function openSource(deps: KmsDeps, ctx: RequestContext, input: ReEncryptSource) {
  const named = input.SourceKeyId === undefined ? undefined : resolveKey(deps, ctx, input.SourceKeyId);
  if (named && isRsa(named)) {
    const k = rsaEncryptionKey(deps, ctx, named, 'ReEncryptFrom', input.SourceEncryptionAlgorithm, input.SourceEncryptionContext);
    if (input.DryRunModifiers?.includes('IGNORE_CIPHERTEXT')) dryRunStop(input.DryRun);
    dryRunStop(input.DryRun);
    const plaintext = await rsaDecrypt(deps, k, input.CiphertextBlob);
    return { key: named, plaintext, algorithm: k.algorithm.name as string, materialId: undefined };
  }
  const opened = await open(
    deps, ctx, input.CiphertextBlob, input.SourceEncryptionContext, input.SourceKeyId,
    input.SourceEncryptionAlgorithm, 'ReEncryptFrom', input.DryRun,
  );
  return { key: opened.key, plaintext: opened.plaintext, algorithm: 'SYMMETRIC_DEFAULT', materialId: opened.material.materialId };
}

const DataKeyRequest = z.object({
  KeyId: KEY_ID,
  EncryptionContext: ENCRYPTION_CONTEXT,
  NumberOfBytes: NUMBER_OF_BYTES.optional(),
  KeySpec: DATA_KEY_SPEC,
  GrantTokens: GRANT_TOKENS,
  Recipient: RECIPIENT,
  DryRun: DRY_RUN,
});

function dataKeyLength(input: { NumberOfBytes?: number | undefined; KeySpec?: string | undefined }): number {
  if ((input.NumberOfBytes === undefined) === (input.KeySpec === undefined)) {
    throw Errors.validation('Please specify either number of bytes or key spec.');
  }
  return input.NumberOfBytes ?? (input.KeySpec === 'AES_128' ? 16 : 32);
}

async function generateDataKey(deps: KmsDeps, ctx: RequestContext, input: z.output<typeof DataKeyRequest>, action: string) {
  const length = dataKeyLength(input);
  noRecipient(input.Recipient);
  const key = encryptingKey(deps, ctx, input.KeyId, action);
  dryRunStop(input.DryRun);
  const plaintext = await deps.token.random(length);
  const sealed = await seal(deps, key, plaintext, input.EncryptionContext);
  return { key, plaintext, sealed };
}

export const GenerateDataKey = operation(DataKeyRequest, async (deps, ctx, input) => {
  const { key, plaintext, sealed } = await generateDataKey(deps, ctx, input, 'GenerateDataKey');
  return { CiphertextBlob: sealed.blob, Plaintext: plaintext, KeyId: key.arn, KeyMaterialId: sealed.material.materialId };
});

export const GenerateDataKeyWithoutPlaintext = operation(DataKeyRequest.omit({ Recipient: true }), async (deps, ctx, input) => {
  const { key, plaintext, sealed } = await generateDataKey(deps, ctx, input, 'GenerateDataKeyWithoutPlaintext');
  plaintext.fill(0);
  return { CiphertextBlob: sealed.blob, KeyId: key.arn, KeyMaterialId: sealed.material.materialId };
});

export const GenerateRandom = operation(
  z.object({ NumberOfBytes: NUMBER_OF_BYTES, CustomKeyStoreId: str(1, 64).optional(), Recipient: RECIPIENT }),
  async (deps, ctx, input) => {
    noRecipient(input.Recipient);
    authorize(ctx, 'GenerateRandom');
    // With CustomKeyStoreId the bytes come from that store's token (AWS: its CloudHSM cluster).
    const token = input.CustomKeyStoreId === undefined ? deps.token : connectedStoreToken(deps, ctx, input.CustomKeyStoreId);
    return { Plaintext: await token.random(input.NumberOfBytes) };
  },
);
