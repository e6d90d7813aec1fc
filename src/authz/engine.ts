import type { Clock } from '../clock.js';
import { Errors } from '../errors.js';
import type { RequestContext } from '../model/request.js';
import type { Logger } from '../log.js';
import type { GrantRecord } from '../store/authz-records.js';
import type { KeyRecord, MetadataStore } from '../store/types.js';
import type { CredentialRegistry } from './credentials.js';
import {
  decideIdentityAccess, decideKeyAccess, evaluateIdentity, type Caller, type Decision, type Denial,
} from './evaluate.js';
import { atLeastAsStrict, constraintsAllow, GRANT_OPERATION_SET, grantIdOfToken } from './grant-rules.js';
import { compilePolicy, parsePrincipal, PolicyError, type CompiledPolicy } from './policy-document.js';
import {
  encryptionContextFor, ENCRYPTION_CONTEXT_ACTIONS, RequestFacts, type AuthorizeFacts,
} from './request-facts.js';

/**
 * Operations AWS allows on a key of another account (when its key policy lets the caller in).
 * Everything else — key management, policies, aliases, tags, rotation, deletion — is refused
 * on another account's key whatever the key policy says.
 */
const CROSS_ACCOUNT = new Set([
  'CreateGrant', 'Decrypt', 'DescribeKey', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext',
  'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'GenerateMac', 'GetKeyRotationStatus', 'GetPublicKey',
  'ListGrants', 'ReEncryptFrom', 'ReEncryptTo', 'RetireGrant', 'RevokeGrant', 'Sign', 'Verify', 'VerifyMac',
  'DeriveSharedSecret',
]);

const REASONS: Record<Denial, (action: string) => string> = {
  'explicit-deny-resource': () => 'with an explicit deny in a resource-based policy',
  'explicit-deny-identity': () => 'with an explicit deny in an identity-based policy',
  'no-resource-policy': (a) => `because no resource-based policy allows the ${a} action`,
  'no-identity-policy': (a) => `because no identity-based policy allows the ${a} action`,
};

export function accessDenied(principalArn: string, action: string, resource: string, denial: Denial) {
  return Errors.accessDenied(
    `User: ${principalArn} is not authorized to perform: ${action} on resource: ${resource} ${REASONS[denial](action)}`,
  );
}

const qualified = (action: string) => `kms:${action}`;
/** Call sites name actions as AWS operations (`Encrypt`); `kms:Encrypt` is accepted too. */
const bare = (action: string) => (action.toLowerCase().startsWith('kms:') ? action.slice(4) : action);
const callerOf = (ctx: RequestContext): Caller => ({
  arn: ctx.principal.arn,
  accountId: ctx.principal.accountId,
  root: ctx.principal.type === 'Root',
});
const rootArn = (accountId: string) => `arn:aws:iam::${accountId}:root`;

export interface AuthzDeps {
  store: MetadataStore;
  clock: Clock;
  region: string;
  log: Logger;
}

/**
 * The authorization engine: key policies (compiled once per policy text and cached by key),
 * the callers' identity policies (compiled and cached by the credential registry), and grants
 * (cached by the store, indexed here by grantee). Decisions are made in memory, before any
 * token call; a changed policy or grant is seen by the next request.
 */
export class Authz {
  private readonly keyPolicies = new Map<string, CompiledPolicy>();
  private readonly grantIndex = new WeakMap<readonly GrantRecord[], Map<string, GrantRecord[]>>();

  constructor(
    private readonly deps: AuthzDeps,
    readonly credentials: CredentialRegistry,
  ) {}

  /** The compiled policy of a key, recompiled when its text changes. */
  keyPolicy(key: KeyRecord): CompiledPolicy {
    const cached = this.keyPolicies.get(key.keyId);
    if (cached && cached.source === key.policy) return cached;
    let compiled: CompiledPolicy;
    try {
      compiled = compilePolicy(key.policy, 'key');
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      // Only a policy stored before validation existed can get here; it allows nothing.
      this.deps.log.error({ keyId: key.keyId, reason: e.message }, 'stored key policy is invalid; it allows nothing');
      compiled = { source: key.policy, statements: [] };
    }
    this.keyPolicies.set(key.keyId, compiled);
    return compiled;
  }

  private facts(ctx: RequestContext, action: string, key?: KeyRecord, extra?: AuthorizeFacts): RequestFacts {
    return new RequestFacts({ ctx, action, key, extra, store: this.deps.store, clock: this.deps.clock, region: this.deps.region });
  }

  private identity(caller: Caller) {
    return caller.root ? [] : this.credentials.identityPolicies(caller.arn);
  }

  /** Grant tokens must be ones this daemon issued (InvalidGrantTokenException otherwise). */
  private checkGrantTokens(ctx: RequestContext): void {
    const tokens = ctx.input?.GrantTokens;
    if (!Array.isArray(tokens)) return;
    for (const t of tokens) {
      if (typeof t !== 'string' || grantIdOfToken(t) === undefined) {
        throw Errors.invalidGrantToken('The grant token in the request is not valid.');
      }
    }
  }

  /**
   * Throws AccessDeniedException unless the caller may perform the action: on the key when one
   * is given, otherwise on `*` (operations that act on no particular key).
   */
  check(ctx: RequestContext, operation: string, key?: KeyRecord, extra?: AuthorizeFacts): void {
    const action = bare(operation);
    this.checkGrantTokens(ctx);
    const decision = this.decide(ctx, action, key, extra);
    if (!decision.allowed) throw accessDenied(ctx.principal.arn, qualified(action), key ? key.arn : '*', decision.denial);
  }

  decide(ctx: RequestContext, operation: string, key?: KeyRecord, extra?: AuthorizeFacts, policy?: CompiledPolicy): Decision {
    const action = bare(operation);
    const caller = callerOf(ctx);
    const act = qualified(action).toLowerCase();
    const facts = this.facts(ctx, action, key, extra);
    if (!key) return decideIdentityAccess(caller, act, '*', this.identity(caller), facts);
    if (key.accountId !== caller.accountId && !CROSS_ACCOUNT.has(action)) {
      return { allowed: false, denial: 'no-resource-policy' };
    }
    return decideKeyAccess({
      caller,
      action: act,
      keyArn: key.arn,
      keyAccount: key.accountId,
      keyPolicy: policy ?? this.keyPolicy(key),
      identity: this.identity(caller),
      facts,
      grant: policy ? undefined : (identityAllows) => this.grantAllows(ctx, caller, action, key, extra, identityAllows),
    });
  }

  /** Alias operations also need permission on the alias itself, which only identity policies give. */
  checkAlias(ctx: RequestContext, operation: string, aliasArn: string): void {
    const action = bare(operation);
    const caller = callerOf(ctx);
    const act = qualified(action);
    const d = decideIdentityAccess(caller, act.toLowerCase(), aliasArn, this.identity(caller), this.facts(ctx, action));
    if (!d.allowed) throw accessDenied(caller.arn, act, aliasArn, d.denial);
  }

  /**
   * The lockout safety check: would this (new) key policy let the caller change the key
   * policy afterwards? Grants cannot give PutKeyPolicy, so only policies count.
   */
  allowsFuturePolicyChange(ctx: RequestContext, key: KeyRecord, policy: CompiledPolicy): boolean {
    const extra: AuthorizeFacts = { conditions: { 'kms:BypassPolicyLockoutSafetyCheck': undefined } };
    return this.decide(ctx, 'PutKeyPolicy', key, extra, policy).allowed;
  }

  /**
   * RetireGrant: the grant decides. Its retiring principal may retire it; so may its grantee
   * when the grant allows RetireGrant; so may the account that issued it (and the retiring
   * account), whose users need kms:RetireGrant in an identity policy. A Deny in an identity
   * policy wins; kms:RetireGrant in a key policy has no effect, as in AWS.
   */
  checkRetire(ctx: RequestContext, grant: GrantRecord, key: KeyRecord): void {
    const caller = callerOf(ctx);
    const act = 'kms:RetireGrant';
    const facts = this.facts(ctx, 'RetireGrant', key);
    const id = caller.root ? { deny: false, allow: true } : evaluateIdentity(this.identity(caller), caller, act.toLowerCase(), key.arn, facts);
    if (id.deny) throw accessDenied(caller.arn, act, key.arn, 'explicit-deny-identity');
    if (grant.retiringPrincipal === caller.arn) return;
    if (grant.granteePrincipal === caller.arn && grant.operations.includes('RetireGrant')) return;
    const retiring = grant.retiringPrincipal ? parsePrincipal(grant.retiringPrincipal) : undefined;
    const accountMayRetire =
      grant.issuingAccount === caller.accountId || (retiring?.root === true && retiring.account === caller.accountId);
    if (accountMayRetire && id.allow) return;
    throw accessDenied(caller.arn, act, key.arn, accountMayRetire ? 'no-identity-policy' : 'no-resource-policy');
  }

  private grantsByGrantee(keyId: string): Map<string, GrantRecord[]> | undefined {
    const grants = this.deps.store.grantsForKey(keyId);
    if (grants.length === 0) return undefined;
    let index = this.grantIndex.get(grants);
    if (!index) {
      index = new Map();
      for (const g of grants) {
        const list = index.get(g.granteePrincipal);
        if (list) list.push(g);
        else index.set(g.granteePrincipal, [g]);
      }
      this.grantIndex.set(grants, index);
    }
    return index;
  }

  /**
   * Whether a grant on the key allows the action: a grant to the caller itself, or to the
   * caller's account (for an account root directly, for its users and roles when their identity
   * policies allow the action). Encryption-context constraints apply to the operations that
   * take an encryption context; CreateGrant through a grant may only hand on a subset of that
   * grant's operations, with constraints at least as strict.
   */
  private grantAllows(
    ctx: RequestContext,
    caller: Caller,
    action: string,
    key: KeyRecord,
    extra: AuthorizeFacts | undefined,
    identityAllows: boolean,
  ): boolean {
    if (!GRANT_OPERATION_SET.has(action)) return false;
    const index = this.grantsByGrantee(key.keyId);
    if (!index) return false;
    const candidates = [...(index.get(caller.arn) ?? [])];
    if (caller.root || identityAllows) {
      candidates.push(...(index.get(rootArn(caller.accountId)) ?? []), ...(index.get(caller.accountId) ?? []));
    }
    if (candidates.length === 0) return false;
    const input = ctx.input ?? {};
    const ec = ENCRYPTION_CONTEXT_ACTIONS.has(action) ? encryptionContextFor(action, input, extra) : undefined;
    const child = action === 'CreateGrant' ? (extra?.newGrant ?? newGrantOf(input)) : undefined;
    for (const g of candidates) {
      if (!g.operations.includes(action)) continue;
      if (child) {
        if (!child.operations.every((op) => g.operations.includes(op))) continue;
        if (!atLeastAsStrict(g.constraints, child.constraints)) continue;
      } else if (ENCRYPTION_CONTEXT_ACTIONS.has(action) && !constraintsAllow(g.constraints, ec)) {
        continue;
      }
      return true;
    }
    return false;
  }
}

function newGrantOf(input: Readonly<Record<string, unknown>>): NonNullable<AuthorizeFacts['newGrant']> {
  return {
    operations: Array.isArray(input.Operations) ? (input.Operations as string[]) : [],
    constraints: (input.Constraints ?? undefined) as NonNullable<AuthorizeFacts['newGrant']>['constraints'],
  };
}
