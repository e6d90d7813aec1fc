import type { Clock } from '../clock.js';
import type { RequestContext } from '../model/request.js';
import type { GrantConstraintsRecord } from '../store/authz-records.js';
import type { KeyRecord, MetadataStore } from '../store/types.js';
import type { Facts } from './policy-conditions.js';

export type FactValue = string | number | boolean | readonly string[] | undefined;

/**
 * What an operation may tell authorize() beyond what it can read from the request itself.
 * Most operations pass nothing: the condition keys are derived from the decoded request
 * (ctx.input), the key and the caller.
 */
export interface AuthorizeFacts {
  /** Condition keys (any letter case) and their values; `undefined` makes a key absent. */
  conditions?: Record<string, FactValue>;
  /** The encryption context the action uses, when it is not the request's own. */
  encryptionContext?: Record<string, string> | undefined;
  /** CreateGrant: the grant being created (checked against a parent grant's limits). */
  newGrant?: { operations: readonly string[]; constraints?: GrantConstraintsRecord | undefined } | undefined;
}

export interface FactSources {
  ctx: RequestContext;
  /** The AWS action name, e.g. `Encrypt`. */
  action: string;
  key?: KeyRecord | undefined;
  extra?: AuthorizeFacts | undefined;
  store: MetadataStore;
  clock: Clock;
  region: string;
}

/** Operations whose request carries an encryption context (grant constraints apply to them). */
export const ENCRYPTION_CONTEXT_ACTIONS = new Set([
  'Encrypt', 'Decrypt', 'ReEncryptFrom', 'ReEncryptTo', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext',
  'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext',
]);
const SYMMETRIC_ONLY = new Set([
  'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext',
]);
const GRANT_MANAGEMENT = new Set(['CreateGrant', 'ListGrants', 'RevokeGrant']);

type Input = Readonly<Record<string, unknown>>;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const one = (v: unknown): readonly string[] | undefined => {
  if (typeof v === 'string') return [v];
  if (typeof v === 'number' || typeof v === 'boolean') return [String(v)];
  return undefined;
};
const record = (v: unknown): Record<string, string> | undefined =>
  v && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v) ? (v as Record<string, string>) : undefined;

/** The encryption context an action is judged on (ReEncrypt has two; CreateGrant's is its constraints). */
export function encryptionContextFor(action: string, input: Input, extra?: AuthorizeFacts): Record<string, string> | undefined {
  if (extra && 'encryptionContext' in extra) return extra.encryptionContext;
  switch (action) {
    case 'ReEncryptFrom':
      return record(input.SourceEncryptionContext);
    case 'ReEncryptTo':
      return record(input.DestinationEncryptionContext);
    case 'CreateGrant': {
      const c = record(input.Constraints) as GrantConstraintsRecord | undefined;
      if (!c?.EncryptionContextEquals && !c?.EncryptionContextSubset) return undefined;
      return { ...c.EncryptionContextSubset, ...c.EncryptionContextEquals };
    }
    default:
      return record(input.EncryptionContext);
  }
}

/** The KeyId parameter that named the key being authorized, when it was an alias. */
function requestAlias(action: string, input: Input): string | undefined {
  const ref = str(action === 'ReEncryptTo' ? input.DestinationKeyId : action === 'ReEncryptFrom' ? input.SourceKeyId : input.KeyId);
  if (!ref) return undefined;
  if (ref.startsWith('alias/')) return ref;
  const m = /^arn:aws[a-z-]*:kms:[^:]*:\d{12}:(alias\/.+)$/.exec(ref);
  return m?.[1];
}

function tagsOf(input: Input): { TagKey: string; TagValue: string }[] | undefined {
  return Array.isArray(input.Tags) ? (input.Tags as { TagKey: string; TagValue: string }[]) : undefined;
}

/** `::ffff:a.b.c.d` (IPv4 clients on a dual-stack socket) is reported as `a.b.c.d`, as AWS does. */
export function normalizeIp(ip: string | undefined): string | undefined {
  if (!ip) return undefined;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? (m[1] as string) : ip;
}

/**
 * The condition-key values of one authorization, computed on first use and remembered: a
 * policy without conditions costs nothing here, and keys that need a lookup (resource tags,
 * the key's aliases) are read only when a policy asks for them.
 */
export class RequestFacts implements Facts {
  private readonly memo = new Map<string, readonly string[] | undefined>();
  private readonly overrides: Map<string, FactValue> | undefined;

  constructor(private readonly s: FactSources) {
    const c = s.extra?.conditions;
    this.overrides = c ? new Map(Object.entries(c).map(([k, v]) => [k.toLowerCase(), v])) : undefined;
  }

  get(lowerKey: string): readonly string[] | undefined {
    if (this.memo.has(lowerKey)) return this.memo.get(lowerKey);
    let v: readonly string[] | undefined;
    if (this.overrides?.has(lowerKey)) {
      const o = this.overrides.get(lowerKey);
      v = Array.isArray(o) ? (o as readonly string[]) : one(o);
    } else {
      v = this.derive(lowerKey);
    }
    this.memo.set(lowerKey, v);
    return v;
  }

  private get input(): Input {
    return this.s.ctx.input ?? {};
  }

  private ec(): Record<string, string> | undefined {
    return encryptionContextFor(this.s.action, this.input, this.s.extra);
  }

  private derive(k: string): readonly string[] | undefined {
    const { ctx, action, key } = this.s;
    const p = ctx.principal;
    const input = this.input;
    if (k.startsWith('kms:encryptioncontext:')) {
      const name = k.slice('kms:encryptioncontext:'.length);
      const values = Object.entries(this.ec() ?? {})
        .filter(([ek]) => ek.toLowerCase() === name)
        .map(([, ev]) => ev);
      return values.length ? values : undefined;
    }
    if (k.startsWith('aws:requesttag/')) {
      const name = k.slice('aws:requesttag/'.length);
      const values = (tagsOf(input) ?? []).filter((t) => t.TagKey.toLowerCase() === name).map((t) => t.TagValue);
      return values.length ? values : undefined;
    }
    if (k.startsWith('aws:resourcetag/')) {
      if (!key) return undefined;
      const name = k.slice('aws:resourcetag/'.length);
      const values = this.s.store.getTags(key.keyId).filter((t) => t.TagKey.toLowerCase() === name).map((t) => t.TagValue);
      return values.length ? values : undefined;
    }
    const createKey = action === 'CreateKey';
    switch (k) {
      case 'kms:encryptioncontextkeys': {
        const ec = this.ec();
        return ec ? Object.keys(ec) : undefined;
      }
      case 'kms:calleraccount':
      case 'aws:principalaccount':
        return [p.accountId];
      case 'aws:principalarn':
        return [p.arn];
      case 'aws:principaltype':
        return [p.type === 'Root' ? 'Account' : p.type === 'IAMUser' ? 'User' : 'AssumedRole'];
      case 'aws:username':
        return p.type === 'IAMUser' ? [p.arn.slice(p.arn.lastIndexOf('/') + 1)] : undefined;
      case 'aws:sourceip':
        return one(normalizeIp(ctx.sourceIp));
      case 'aws:currenttime':
        return [this.s.clock.now().toISOString()];
      case 'aws:epochtime':
        return [String(Math.floor(this.s.clock.now().getTime() / 1000))];
      case 'aws:securetransport':
        return [ctx.secureTransport ? 'true' : 'false'];
      case 'aws:requestedregion':
        return [this.s.region];
      case 'aws:resourceaccount':
        return key ? [key.accountId] : undefined;
      case 'aws:useragent':
        return one(ctx.userAgent);
      case 'aws:tagkeys': {
        const tags = tagsOf(input);
        if (tags) return tags.map((t) => t.TagKey);
        return Array.isArray(input.TagKeys) ? (input.TagKeys as string[]) : undefined;
      }
      case 'kms:encryptionalgorithm':
        if (action === 'ReEncryptFrom') return [str(input.SourceEncryptionAlgorithm) ?? 'SYMMETRIC_DEFAULT'];
        if (action === 'ReEncryptTo') return [str(input.DestinationEncryptionAlgorithm) ?? 'SYMMETRIC_DEFAULT'];
        if (action === 'Encrypt' || action === 'Decrypt') return [str(input.EncryptionAlgorithm) ?? 'SYMMETRIC_DEFAULT'];
        return SYMMETRIC_ONLY.has(action) ? ['SYMMETRIC_DEFAULT'] : undefined;
      case 'kms:signingalgorithm':
        return one(input.SigningAlgorithm);
      case 'kms:macalgorithm':
        return one(input.MacAlgorithm);
      case 'kms:messagetype':
        return one(input.MessageType);
      case 'kms:keyagreementalgorithm':
        return one(input.KeyAgreementAlgorithm);
      case 'kms:keyspec':
      case 'kms:customermasterkeyspec':
        if (key) return [key.keySpec];
        return createKey ? [str(input.KeySpec) ?? str(input.CustomerMasterKeySpec) ?? 'SYMMETRIC_DEFAULT'] : undefined;
      case 'kms:keyusage':
      case 'kms:customermasterkeyusage':
        if (key) return [key.keyUsage];
        return createKey ? [str(input.KeyUsage) ?? 'ENCRYPT_DECRYPT'] : undefined;
      case 'kms:keyorigin':
        if (key) return [key.origin];
        return createKey ? [str(input.Origin) ?? 'AWS_KMS'] : undefined;
      case 'kms:multiregion':
        if (key) return [String(this.s.store.multiRegion.get(key.keyId) !== undefined)];
        return createKey ? [String(input.MultiRegion === true)] : undefined;
      case 'kms:bypasspolicylockoutsafetycheck':
        return action === 'CreateKey' || action === 'PutKeyPolicy' ? one(input.BypassPolicyLockoutSafetyCheck) : undefined;
      case 'kms:grantoperations':
        return action === 'CreateGrant' && Array.isArray(input.Operations) ? (input.Operations as string[]) : undefined;
      case 'kms:granteeprincipal':
        return action === 'CreateGrant' ? one(input.GranteePrincipal) : undefined;
      case 'kms:retiringprincipal':
        return action === 'CreateGrant' || action === 'ListRetirableGrants' ? one(input.RetiringPrincipal) : undefined;
      case 'kms:grantconstrainttype': {
        const c = action === 'CreateGrant' ? record(input.Constraints) : undefined;
        const types = Object.keys(c ?? {}).filter((t) => c?.[t] !== undefined);
        return types.length ? types : undefined;
      }
      case 'kms:grantisforawsresource':
        return GRANT_MANAGEMENT.has(action) ? ['false'] : undefined;
      case 'kms:requestalias':
        return one(requestAlias(action, input));
      case 'kms:resourcealiases': {
        if (!key) return undefined;
        const aliases = this.s.store.listAliases(key.accountId, 1000, undefined, key.keyId).items.map((a) => a.aliasName);
        return aliases.length ? aliases : undefined;
      }
      case 'kms:rotationperiodindays':
        return one(input.RotationPeriodInDays ?? (action === 'EnableKeyRotation' ? 365 : undefined));
      case 'kms:schedulekeydeletionpendingwindowindays':
        return one(input.PendingWindowInDays ?? (action === 'ScheduleKeyDeletion' ? 30 : undefined));
      case 'kms:datakeypairspec':
        return one(input.KeyPairSpec);
      case 'kms:wrappingalgorithm':
        return one(input.WrappingAlgorithm);
      case 'kms:wrappingkeyspec':
        return one(input.WrappingKeySpec);
      case 'kms:expirationmodel':
        return one(input.ExpirationModel);
      case 'kms:validto': {
        const v = input.ValidTo;
        if (v instanceof Date) return [String(v.getTime() / 1000)];
        return one(v);
      }
      default:
        return undefined;
    }
  }
}
