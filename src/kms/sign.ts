import { createHash } from 'node:crypto';
import { z } from 'zod';
import { Errors } from '../errors.js';
import { HASH_BYTES } from '../hsm/asymmetric.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { kindOf, requireAlgorithm, SIGNING_ALGORITHMS, specInfo, type SigningAlgorithm } from './key-specs.js';
import { keyFor } from './key-use.js';
import { dryRunStop } from './request-flags.js';
import { blob, DRY_RUN, GRANT_TOKENS, KEY_ID, oneOf } from './validation.js';
import { tokenFor } from './token-for.js';

/**
 * Sign and Verify with SIGN_VERIFY keys. RAW messages (≤ 4096 bytes) are hashed here with the
 * algorithm's hash; DIGEST messages must be exactly that hash's length. The token then signs
 * the digest (CKM_RSA_PKCS with a DigestInfo, CKM_RSA_PKCS_PSS with salt = digest length, or
 * CKM_ECDSA) and verifies with the public half. ECDSA signatures are DER, as AWS returns them.
 */

const SIGNING_ALGORITHM = oneOf([
  'RSASSA_PSS_SHA_256', 'RSASSA_PSS_SHA_384', 'RSASSA_PSS_SHA_512', 'RSASSA_PKCS1_V1_5_SHA_256',
  'RSASSA_PKCS1_V1_5_SHA_384', 'RSASSA_PKCS1_V1_5_SHA_512', 'ECDSA_SHA_256', 'ECDSA_SHA_384', 'ECDSA_SHA_512',
  'SM2DSA', 'ML_DSA_SHAKE_256', 'ED25519_SHA_512', 'ED25519_PH_SHA_512',
]);
const MESSAGE_TYPE = oneOf(['RAW', 'DIGEST', 'EXTERNAL_MU']).optional();

const SignSchema = z.object({
  KeyId: KEY_ID,
  Message: blob(1, 4096),
  MessageType: MESSAGE_TYPE,
  GrantTokens: GRANT_TOKENS,
  SigningAlgorithm: SIGNING_ALGORITHM,
  DryRun: DRY_RUN,
});

interface SignInput {
  KeyId: string;
  Message: Buffer;
  MessageType?: string | undefined;
  SigningAlgorithm: string;
  DryRun?: boolean | undefined;
}

function prepare(deps: KmsDeps, ctx: RequestContext, input: SignInput, action: 'Sign' | 'Verify') {
  const { key, material } = keyFor(deps, ctx, input.KeyId, action, 'SIGN_VERIFY');
  requireAlgorithm(key, input.SigningAlgorithm, specInfo(key.keySpec).signing);
  const algorithm = input.SigningAlgorithm as SigningAlgorithm;
  const { scheme, hash } = SIGNING_ALGORITHMS[algorithm];
  const missing = deps.token.missingMechanisms({ op: 'sign', scheme });
  if (missing.length) {
    throw Errors.unsupported(`${algorithm} needs ${missing.join(', ')}, which token '${deps.token.label}' does not offer.`);
  }
  const messageType = input.MessageType ?? 'RAW';
  if (messageType === 'EXTERNAL_MU') throw Errors.validation('MessageType EXTERNAL_MU is valid only with ML_DSA keys.');
  let digest: Buffer;
  if (messageType === 'DIGEST') {
    if (input.Message.length !== HASH_BYTES[hash]) throw Errors.validation(`Digest is invalid length for algorithm ${algorithm}.`);
    digest = input.Message;
  } else {
    digest = createHash(hash).update(input.Message).digest();
  }
  dryRunStop(input.DryRun);
  return { key, material, algorithm, scheme, hash, digest };
}

export const Sign = operation(SignSchema, async (deps, ctx, input) => {
  const p = prepare(deps, ctx, input, 'Sign');
  const signature = await tokenFor(deps, p.key).sign(p.material.objectId, p.scheme, p.hash, p.digest);
  return { KeyId: p.key.arn, Signature: signature, SigningAlgorithm: p.algorithm };
});

export const Verify = operation(SignSchema.extend({ Signature: blob(1, 6144) }), async (deps, ctx, input) => {
  const p = prepare(deps, ctx, input, 'Verify');
  const valid = await tokenFor(deps, p.key).verify(p.material.objectId, kindOf(p.key), p.scheme, p.hash, p.digest, input.Signature);
  if (!valid) throw Errors.kmsInvalidSignature('The signature is not valid for this message, key and signing algorithm.');
  return { KeyId: p.key.arn, SignatureValid: true, SigningAlgorithm: p.algorithm };
});
