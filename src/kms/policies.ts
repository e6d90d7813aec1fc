import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { compilePolicy, PolicyError, type CompiledPolicy } from '../authz/policy-document.js';
import { Errors } from '../errors.js';
import type { KeyRecord } from '../store/types.js';
import { operation, type RequestContext } from './context.js';
import { resolveKey } from './key-ref.js';
import { bool, KEY_ID, LIMIT, MARKER, str } from './validation.js';

/** The only key policy name AWS KMS knows. */
/** AWS's default key policy: the account root gets kms:*, which delegates to identity policies. */
export function defaultKeyPolicy(accountId: string): string {
  return JSON.stringify(
    {
      Version: '2012-10-17',
      Id: 'key-default-1',
      Statement: [
        {
          Sid: 'Enable IAM User Permissions',
          Effect: 'Allow',
          Principal: { AWS: `arn:aws:iam::${accountId}:root` },
          Action: 'kms:*',
          Resource: '*',
        },
      ],
    },
    null,
    2,
  );
}

export const DEFAULT_POLICY_NAME = 'default';
const POLICY = str(1, 131072, /^[\u0009\u000A\u000D\u0020-\u00FF]+$/);
const POLICY_NAME = str(1, 128, /^[\w]+$/);
export const LOCKOUT_MESSAGE = 'The new key policy will not allow you to update the key policy in the future.';

/** Validates a key policy document; MalformedPolicyDocumentException with the reason otherwise. */
export function validateKeyPolicy(policy: string): CompiledPolicy {
  try {
    return compilePolicy(policy, 'key');
  } catch (e) {
    if (e instanceof PolicyError) throw Errors.malformedPolicy(e.message);
    throw e;
  }
}

/**
 * The policy lockout safety check: refuse a key policy that would not let the caller call
 * PutKeyPolicy on the key afterwards, unless the request bypasses the check.
 */
export function checkLockout(ctx: RequestContext, key: KeyRecord, policy: CompiledPolicy, bypass: boolean | undefined): void {
  if (bypass || !ctx.authz) return;
  if (!ctx.authz.allowsFuturePolicyChange(ctx, key, policy)) throw Errors.malformedPolicy(LOCKOUT_MESSAGE);
}

export const PutKeyPolicy = operation(
  z.object({
    KeyId: KEY_ID,
    PolicyName: POLICY_NAME.optional(),
    Policy: POLICY,
    BypassPolicyLockoutSafetyCheck: bool().optional(),
  }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'PutKeyPolicy', key);
    if ((input.PolicyName ?? DEFAULT_POLICY_NAME) !== DEFAULT_POLICY_NAME) {
      throw Errors.validation(`The only valid policy name is ${DEFAULT_POLICY_NAME}.`);
    }
    const compiled = validateKeyPolicy(input.Policy);
    checkLockout(ctx, key, compiled, input.BypassPolicyLockoutSafetyCheck);
    deps.store.updateKey(key.keyId, { policy: input.Policy });
    return {};
  },
);

export const GetKeyPolicy = operation(
  z.object({ KeyId: KEY_ID, PolicyName: POLICY_NAME.optional() }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'GetKeyPolicy', key);
    const name = input.PolicyName ?? DEFAULT_POLICY_NAME;
    if (name !== DEFAULT_POLICY_NAME) throw Errors.notFound(`No such policy exists: ${name}`);
    return { Policy: key.policy, PolicyName: DEFAULT_POLICY_NAME };
  },
);

export const ListKeyPolicies = operation(
  z.object({ KeyId: KEY_ID, Limit: LIMIT, Marker: MARKER }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'ListKeyPolicies', key);
    // One policy per key: there is never a second page, so no marker is valid.
    if (input.Marker !== undefined) throw Errors.invalidMarker('The request contains an invalid marker.');
    return { PolicyNames: [DEFAULT_POLICY_NAME], Truncated: false };
  },
);
