import { Errors } from '../errors.js';
import type { RequestContext } from '../model/request.js';
import type { KeyRecord } from '../store/types.js';
import type { Authz } from './engine.js';
import type { AuthorizeFacts } from './request-facts.js';

export type { AuthorizeFacts } from './request-facts.js';

/**
 * The authorization gate every operation passes before any token call:
 *
 *   authorize(ctx, 'Encrypt', key)            // an operation on a key
 *   authorize(ctx, 'ListKeys')                // an operation on no particular key (resource *)
 *   authorize(ctx, 'CreateGrant', key, facts) // facts the request does not carry itself
 *
 * The engine (src/authz/engine.ts) evaluates the key policy, the caller's identity policies and
 * the key's grants with AWS semantics; condition keys are derived from the decoded request
 * (ctx.input), the key and the caller, so most callers pass no facts. Any action name works:
 * policies match it by wildcard (`kms:*`, `kms:Describe*`), and only GrantOperation names can be
 * allowed by a grant. Throws AccessDeniedException with AWS's message.
 */
export function authorize(ctx: RequestContext<Authz>, action: string, key?: KeyRecord, facts?: AuthorizeFacts): void {
  if (ctx.authz) {
    ctx.authz.check(ctx, action, key, facts);
    return;
  }
  // No engine (a front door that does not wire one): AWS's default key policy, roots only.
  const p = ctx.principal;
  const accountId = key ? key.accountId : p.accountId;
  if (p.type === 'Root' && p.accountId === accountId) return;
  const resource = key ? key.arn : '*';
  throw Errors.accessDenied(
    `User: ${p.arn} is not authorized to perform: kms:${action} on resource: ${resource} ` +
      `because no resource-based policy allows the kms:${action} action`,
  );
}

/** Alias operations need permission on the alias (identity policies) as well as on the key(s). */
export function authorizeAlias(ctx: RequestContext<Authz>, action: string, aliasArn: string): void {
  if (ctx.authz) {
    ctx.authz.checkAlias(ctx, action, aliasArn);
    return;
  }
  if (ctx.principal.type === 'Root') return;
  throw Errors.accessDenied(
    `User: ${ctx.principal.arn} is not authorized to perform: kms:${action} on resource: ${aliasArn} ` +
      `because no identity-based policy allows the kms:${action} action`,
  );
}
