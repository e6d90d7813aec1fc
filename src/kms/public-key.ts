import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import { operation } from './context.js';
import { requireUsable, resolveKey } from './key-ref.js';
import { keyAlgorithms, kindOf } from './key-specs.js';
import { materialOf } from './material.js';
import { GRANT_TOKENS, KEY_ID } from './validation.js';
import { tokenFor } from './token-for.js';

/** GetPublicKey: the public half of an asymmetric key as DER SubjectPublicKeyInfo, with what it is for. */
export const GetPublicKey = operation(z.object({ KeyId: KEY_ID, GrantTokens: GRANT_TOKENS }), async (deps, ctx, input) => {
  const key = resolveKey(deps, ctx, input.KeyId);
  authorize(ctx, 'GetPublicKey', key);
  if (key.keySpec === 'SYMMETRIC_DEFAULT' || key.keySpec.startsWith('HMAC_')) {
    throw Errors.unsupported(`${key.arn} is a symmetric key (${key.keySpec}); GetPublicKey is valid only for asymmetric KMS keys.`);
  }
  requireUsable(key);
  const material = materialOf(deps, key, key.currentVersion);
  if (!material) throw Errors.keyUnavailable(`The key material for ${key.arn} is unavailable.`);
  const publicKey = await tokenFor(deps, key).publicKeyInfo(material.objectId, kindOf(key));
  return {
    KeyId: key.arn,
    PublicKey: publicKey,
    CustomerMasterKeySpec: key.keySpec,
    KeySpec: key.keySpec,
    KeyUsage: key.keyUsage,
    ...keyAlgorithms(deps, key),
  };
});
