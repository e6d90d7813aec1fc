import type { Facts } from './policy-conditions.js';
import type { CompiledPolicy, CompiledStatement } from './policy-document.js';
import { matchesPatterns } from './policy-match.js';

/**
 * The AWS KMS authorization decision, as a pure function of compiled policies and request facts.
 *
 * - An explicit Deny in the key policy or in the caller's identity policies always wins.
 * - Same account: allowed when the key policy allows the caller directly (its user/role ARN or
 *   `*`), or allows the caller's account (root ARN / account id) and an identity policy allows it.
 * - Another account: the key policy must allow the caller or its account, and the caller's
 *   identity policy must allow it too.
 * - Otherwise a grant may allow it (checked by the caller-supplied function).
 * - The account root has no identity policies: it is allowed whatever its own account allows.
 */

export interface Caller {
  arn: string;
  accountId: string;
  root: boolean;
}

export interface PolicyVerdict {
  deny: boolean;
  /** An Allow naming the caller itself (or `*`). */
  allowDirect: boolean;
  /** An Allow naming the caller's account, which delegates to identity policies. */
  allowAccount: boolean;
}

export type Denial = 'explicit-deny-resource' | 'explicit-deny-identity' | 'no-resource-policy' | 'no-identity-policy';

export type Decision = { allowed: true; via: 'policy' | 'grant' } | { allowed: false; denial: Denial };

/** How a key-policy statement's Principal relates to the caller. */
function principalMatch(s: CompiledStatement, caller: Caller): 'direct' | 'account' | undefined {
  const p = s.principals;
  if (!p) return 'direct'; // identity policy: the statement is attached to the caller
  let m: 'direct' | 'account' | undefined;
  if (p.any || p.arns.has(caller.arn)) m = 'direct';
  else if (p.accounts.has(caller.accountId)) m = caller.root ? 'direct' : 'account';
  if (!s.notPrincipal) return m;
  // NotPrincipal: the statement applies to everyone except the principals it lists. An account
  // entry excludes that account's root only.
  const listed = p.any || p.arns.has(caller.arn) || (caller.root && p.accounts.has(caller.accountId));
  return listed ? undefined : 'direct';
}

/** Evaluates one policy for one request. `action` is lower-cased `kms:Action`. */
export function evaluatePolicy(
  policy: CompiledPolicy,
  caller: Caller,
  action: string,
  resource: string,
  facts: Facts,
): PolicyVerdict {
  const v: PolicyVerdict = { deny: false, allowDirect: false, allowAccount: false };
  for (const s of policy.statements) {
    if (matchesPatterns(s.actions, action) === s.notAction) continue;
    if (matchesPatterns(s.resources, resource) === s.notResource) continue;
    const who = principalMatch(s, caller);
    if (!who) continue;
    if (s.effect === 'Allow') {
      // Nothing to learn from an Allow we already have.
      if (who === 'direct' ? v.allowDirect : v.allowAccount || v.allowDirect) continue;
    }
    let ok = true;
    for (const c of s.conditions) {
      if (!c(facts)) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    if (s.effect === 'Deny') {
      v.deny = true;
      return v;
    }
    if (who === 'direct') v.allowDirect = true;
    else v.allowAccount = true;
  }
  return v;
}

/** Identity policies, merged: any Deny denies, any Allow allows. */
export function evaluateIdentity(
  policies: readonly CompiledPolicy[],
  caller: Caller,
  action: string,
  resource: string,
  facts: Facts,
): { deny: boolean; allow: boolean } {
  let allow = false;
  for (const p of policies) {
    const v = evaluatePolicy(p, caller, action, resource, facts);
    if (v.deny) return { deny: true, allow: false };
    allow ||= v.allowDirect;
  }
  return { deny: false, allow };
}

export interface KeyRequest {
  caller: Caller;
  /** Lower-cased `kms:Action`. */
  action: string;
  keyArn: string;
  keyAccount: string;
  keyPolicy: CompiledPolicy;
  /** The caller's identity policies; ignored for an account root. */
  identity: readonly CompiledPolicy[];
  facts: Facts;
  /** Whether a grant allows the request, given whether identity policies allow it. */
  grant?: ((identityAllows: boolean) => boolean) | undefined;
}

/** The decision for an operation on a KMS key. */
export function decideKeyAccess(r: KeyRequest): Decision {
  const kp = evaluatePolicy(r.keyPolicy, r.caller, r.action, r.keyArn, r.facts);
  if (kp.deny) return { allowed: false, denial: 'explicit-deny-resource' };
  const id = r.caller.root ? { deny: false, allow: true } : evaluateIdentity(r.identity, r.caller, r.action, r.keyArn, r.facts);
  if (id.deny) return { allowed: false, denial: 'explicit-deny-identity' };
  const sameAccount = r.caller.accountId === r.keyAccount;
  const byPolicy = sameAccount
    ? kp.allowDirect || (kp.allowAccount && id.allow)
    : (kp.allowDirect || kp.allowAccount) && id.allow;
  if (byPolicy) return { allowed: true, via: 'policy' };
  if (r.grant?.(id.allow)) return { allowed: true, via: 'grant' };
  const resourceAllows = sameAccount ? kp.allowAccount : kp.allowDirect || kp.allowAccount;
  return { allowed: false, denial: resourceAllows ? 'no-identity-policy' : 'no-resource-policy' };
}

/**
 * The decision for an operation whose resource is not a key (`*`, or an alias ARN): only the
 * caller's identity policies speak; an account root is allowed in its own account.
 */
export function decideIdentityAccess(
  caller: Caller,
  action: string,
  resource: string,
  identity: readonly CompiledPolicy[],
  facts: Facts,
): Decision {
  if (caller.root) return { allowed: true, via: 'policy' };
  const id = evaluateIdentity(identity, caller, action, resource, facts);
  if (id.deny) return { allowed: false, denial: 'explicit-deny-identity' };
  return id.allow ? { allowed: true, via: 'policy' } : { allowed: false, denial: 'no-identity-policy' };
}
