import { z } from 'zod';
import { Errors } from '../errors.js';
import type { KeyKind } from '../hsm/asymmetric.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { encryptingKey, seal } from './crypto.js';
import { specInfo } from './key-specs.js';
import { dryRunStop, noRecipient } from './request-flags.js';
import { blob, DRY_RUN, ENCRYPTION_CONTEXT, GRANT_TOKENS, KEY_ID, oneOf, RECIPIENT, str } from './validation.js';

/**
 * GenerateDataKeyPair(+WithoutPlaintext): a fresh key pair from the token (see
 * Token.generateExportablePair: generated as session objects, wrapped out under a one-time
 * key), the private key as PKCS#8 DER sealed under a symmetric KMS key in the usual
 * ciphertext format (so Decrypt returns the same PKCS#8 bytes), the public key as SPKI.
 */

const KEY_PAIR_SPEC = oneOf([
  'RSA_2048', 'RSA_3072', 'RSA_4096', 'ECC_NIST_P256', 'ECC_NIST_P384', 'ECC_NIST_P521', 'ECC_SECG_P256K1', 'SM2',
  'ECC_NIST_EDWARDS25519',
]);
const Schema = z.object({
  EncryptionContext: ENCRYPTION_CONTEXT,
  KeyId: KEY_ID,
  KeyPairSpec: KEY_PAIR_SPEC,
  GrantTokens: GRANT_TOKENS,
  Recipient: RECIPIENT,
  DryRun: DRY_RUN,
});

function pairKind(deps: KmsDeps, spec: string): KeyKind {
  const kind = specInfo(spec).kind;
  if (!kind || kind.type === 'hmac') {
    throw Errors.unsupported(`KeyPairSpec ${spec} is not supported by this key store.`);
  }
  const missing = deps.token.missingMechanisms({ op: 'export-pair', kind });
  if (missing.length) {
    throw Errors.unsupported(`KeyPairSpec ${spec} needs ${missing.join(', ')}, which token '${deps.token.label}' does not offer.`);
  }
  return kind;
}

async function generate(deps: KmsDeps, ctx: RequestContext, input: z.output<typeof Schema>, action: string) {
  noRecipient(input.Recipient);
  const key = encryptingKey(deps, ctx, input.KeyId, action);
  const kind = pairKind(deps, input.KeyPairSpec);
  dryRunStop(input.DryRun);
  const pair = await deps.token.generateExportablePair(kind);
  try {
    const sealed = await seal(deps, key, pair.privateKey, input.EncryptionContext);
    return { key, pair, sealed };
  } catch (e) {
    pair.privateKey.fill(0);
    throw e;
  }
}

export const GenerateDataKeyPair = operation(Schema, async (deps, ctx, input) => {
  const { key, pair, sealed } = await generate(deps, ctx, input, 'GenerateDataKeyPair');
  return {
    PrivateKeyCiphertextBlob: sealed.blob,
    PrivateKeyPlaintext: pair.privateKey,
    PublicKey: pair.publicKey,
    KeyId: key.arn,
    KeyPairSpec: input.KeyPairSpec,
    KeyMaterialId: sealed.material.materialId,
  };
});

export const GenerateDataKeyPairWithoutPlaintext = operation(Schema.omit({ Recipient: true }), async (deps, ctx, input) => {
  const { key, pair, sealed } = await generate(deps, ctx, input, 'GenerateDataKeyPairWithoutPlaintext');
  pair.privateKey.fill(0);
  return {
    PrivateKeyCiphertextBlob: sealed.blob,
    PublicKey: pair.publicKey,
    KeyId: key.arn,
    KeyPairSpec: input.KeyPairSpec,
    KeyMaterialId: sealed.material.materialId,
  };
});
