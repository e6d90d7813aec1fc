import { Errors } from '../errors.js';
import type { RequestContext } from '../kms/context.js';
import type { KeyRecord } from '../store/types.js';

/**
 * The authorization gate every operation passes before any token call.
 *
 * What it decides today: the AWS default key policy, which gives the key's account root
 * `kms:*`. The only principals that exist yet are account roots (the bootstrap admin), so a
 * root may use keys of its own account and nothing else. Key policies, identity policies and
 * grants (issue #3) extend this function; its callers stay as they are.
 */
export function authorize(ctx: RequestContext, action: string, key?: KeyRecord): void {
  const p = ctx.principal;
  const accountId = key ? key.accountId : p.accountId;
  if (p.type === 'Root' && p.accountId === accountId) return;
  const resource = key ? key.arn : '*';
  throw Errors.accessDenied(
    `User: ${p.arn} is not authorized to perform: kms:${action} on resource: ${resource} ` +
      `because no resource-based policy allows the kms:${action} action`,
  );
}
