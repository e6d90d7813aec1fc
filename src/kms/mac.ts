import { z } from 'zod';
import { Errors } from '../errors.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { MAC_ALGORITHMS, requireAlgorithm, specInfo, type MacAlgorithm } from './key-specs.js';
import { keyFor } from './key-use.js';
import { dryRunStop } from './request-flags.js';
import { blob, DRY_RUN, GRANT_TOKENS, KEY_ID, oneOf } from './validation.js';
import { tokenFor } from './token-for.js';

/** GenerateMac and VerifyMac with GENERATE_VERIFY_MAC keys: HMAC computed and compared inside the token. */

const MAC_ALGORITHM = oneOf(['HMAC_SHA_224', 'HMAC_SHA_256', 'HMAC_SHA_384', 'HMAC_SHA_512']);

const GenerateMacSchema = z.object({
  Message: blob(1, 4096),
  KeyId: KEY_ID,
  MacAlgorithm: MAC_ALGORITHM,
  GrantTokens: GRANT_TOKENS,
  DryRun: DRY_RUN,
});

function prepare(deps: KmsDeps, ctx: RequestContext, input: z.output<typeof GenerateMacSchema>, action: string) {
  const { key, material } = keyFor(deps, ctx, input.KeyId, action, 'GENERATE_VERIFY_MAC');
  requireAlgorithm(key, input.MacAlgorithm, specInfo(key.keySpec).mac);
  const algorithm = input.MacAlgorithm as MacAlgorithm;
  dryRunStop(input.DryRun);
  return { key, material, algorithm, hash: MAC_ALGORITHMS[algorithm] };
}

export const GenerateMac = operation(GenerateMacSchema, async (deps, ctx, input) => {
  const p = prepare(deps, ctx, input, 'GenerateMac');
  const mac = await tokenFor(deps, p.key).mac(p.material.objectId, p.hash, input.Message);
  return { Mac: mac, MacAlgorithm: p.algorithm, KeyId: p.key.arn };
});

export const VerifyMac = operation(GenerateMacSchema.extend({ Mac: blob(1, 6144) }), async (deps, ctx, input) => {
  const p = prepare(deps, ctx, input, 'VerifyMac');
  const valid = await tokenFor(deps, p.key).verifyMac(p.material.objectId, p.hash, input.Message, input.Mac);
  if (!valid) throw Errors.kmsInvalidMac('The MAC is not valid for this message, key and MAC algorithm.');
  return { KeyId: p.key.arn, MacValid: true, MacAlgorithm: p.algorithm };
});
