import { compileCondition, ConditionError, type ConditionTest } from './policy-conditions.js';
import { compilePatterns, type PatternSet } from './policy-match.js';

/**
 * Policy documents (key policies and identity policies): validation with a reason, and
 * compilation into a form that evaluates a request with a few set lookups and closures.
 */

export type PolicyKind = 'key' | 'identity';

/** Raised for a document that cannot be accepted; the message is the reason shown to the caller. */
export class PolicyError extends Error {}

/** Who a key-policy statement names. Account entries delegate to the account's identity policies. */
export interface PrincipalSet {
  any: boolean;
  accounts: Set<string>;
  arns: Set<string>;
}

export interface CompiledStatement {
  sid?: string | undefined;
  effect: 'Allow' | 'Deny';
  /** Key policies only. */
  principals?: PrincipalSet | undefined;
  notPrincipal: boolean;
  /** Lower-cased `service:action` patterns. */
  actions: PatternSet;
  notAction: boolean;
  resources: PatternSet;
  notResource: boolean;
  conditions: ConditionTest[];
}

export interface CompiledPolicy {
  source: string;
  statements: CompiledStatement[];
}

const VERSIONS = new Set(['2012-10-17', '2008-10-17']);
const POLICY_FIELDS = new Set(['Version', 'Id', 'Statement']);
const STATEMENT_FIELDS = new Set([
  'Sid', 'Effect', 'Principal', 'NotPrincipal', 'Action', 'NotAction', 'Resource', 'NotResource', 'Condition',
]);
/** AWS's quota on a key policy document. */
export const MAX_KEY_POLICY_BYTES = 32 * 1024;

const ACCOUNT = /^\d{12}$/;
const IAM_PRINCIPAL = /^arn:aws[a-z-]*:iam::(\d{12}):(root|user\/[\w+=,.@/-]+|role\/[\w+=,.@/-]+)$/;
const STS_PRINCIPAL = /^arn:aws[a-z-]*:sts::(\d{12}):(assumed-role\/[\w+=,.@/-]+\/[\w+=,.@-]+|federated-user\/[\w+=,.@-]+)$/;
const ACTION = /^(\*|[a-zA-Z0-9-]+:[a-zA-Z0-9*?]+)$/;

/** Parses a principal ARN or account id as policies and grants use it. */
export function parsePrincipal(value: string): { account: string; root: boolean } | undefined {
  if (ACCOUNT.test(value)) return { account: value, root: true };
  const iam = IAM_PRINCIPAL.exec(value);
  if (iam) return { account: iam[1] as string, root: iam[2] === 'root' };
  const sts = STS_PRINCIPAL.exec(value);
  if (sts) return { account: sts[1] as string, root: false };
  return undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function stringList(v: unknown, what: string): string[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0 || list.some((x) => typeof x !== 'string' || x.length === 0)) {
    throw new PolicyError(`${what} must be a non-empty string or a non-empty list of non-empty strings.`);
  }
  return list as string[];
}

function compilePrincipal(v: unknown): PrincipalSet {
  const set: PrincipalSet = { any: false, accounts: new Set(), arns: new Set() };
  if (v === '*') {
    set.any = true;
    return set;
  }
  if (!isObject(v) || Object.keys(v).length === 0) {
    throw new PolicyError('Policy contains a statement with one or more invalid principals.');
  }
  for (const [type, value] of Object.entries(v)) {
    const values = stringList(value, `Principal ${type}`);
    if (type === 'AWS') {
      for (const p of values) {
        if (p === '*') {
          set.any = true;
          continue;
        }
        const parsed = parsePrincipal(p);
        if (!parsed) throw new PolicyError('Policy contains a statement with one or more invalid principals.');
        if (parsed.root) set.accounts.add(parsed.account);
        else set.arns.add(p);
      }
    } else if (type === 'Service' || type === 'Federated' || type === 'CanonicalUser') {
      // Accepted as AWS does, but no request to this daemon is ever made by such a principal.
    } else {
      throw new PolicyError('Policy contains a statement with one or more invalid principals.');
    }
  }
  return set;
}

function compileConditions(v: unknown): ConditionTest[] {
  if (v === undefined) return [];
  if (!isObject(v)) throw new PolicyError('The Condition element must be an object of operators.');
  const tests: ConditionTest[] = [];
  for (const [operator, block] of Object.entries(v)) {
    if (!isObject(block) || Object.keys(block).length === 0) {
      throw new PolicyError(`Condition operator ${operator} must map condition keys to values.`);
    }
    for (const [key, values] of Object.entries(block)) {
      if (!/^[A-Za-z0-9-]+:\S+$/.test(key)) throw new PolicyError(`'${key}' is not a valid condition key.`);
      const lowerKey = key.toLowerCase();
      if (
        operator.startsWith('ForAllValues:') &&
        (lowerKey.startsWith('kms:encryptioncontext:') || lowerKey.startsWith('aws:requesttag/'))
      ) {
        const what = lowerKey.startsWith('kms:') ? 'encryption context' : 'tag';
        throw new PolicyError(
          `OverlyPermissiveCondition: Using the ForAllValues set operator with a single-valued condition key matches ` +
            `requests without the specified ${what} or with an unspecified ${what}. To fix, remove ForAllValues.`,
        );
      }
      try {
        tests.push(compileCondition(operator, key, values));
      } catch (e) {
        if (e instanceof ConditionError) throw new PolicyError(e.message);
        throw e;
      }
    }
  }
  return tests;
}

function compileStatement(s: unknown, kind: PolicyKind, index: number): CompiledStatement | undefined {
  if (!isObject(s)) throw new PolicyError(`Statement ${index + 1} must be an object.`);
  for (const field of Object.keys(s)) {
    if (!STATEMENT_FIELDS.has(field)) throw new PolicyError(`Statement ${index + 1} has an unknown element '${field}'.`);
  }
  if (s.Sid !== undefined && typeof s.Sid !== 'string') throw new PolicyError('Sid must be a string.');
  if (s.Effect !== 'Allow' && s.Effect !== 'Deny') {
    throw new PolicyError(`Statement ${index + 1}: Effect must be Allow or Deny.`);
  }
  const both = (a: string, b: string) => {
    if (s[a] !== undefined && s[b] !== undefined) {
      throw new PolicyError(`Statement ${index + 1} cannot have both ${a} and ${b}.`);
    }
  };
  both('Principal', 'NotPrincipal');
  both('Action', 'NotAction');
  both('Resource', 'NotResource');

  let principals: PrincipalSet | undefined;
  const principal = s.Principal ?? s.NotPrincipal;
  if (kind === 'identity') {
    if (principal !== undefined) throw new PolicyError('Has prohibited field Principal.');
  } else {
    if (principal === undefined) throw new PolicyError('Policy contains a statement with no principal.');
    principals = compilePrincipal(principal);
  }

  const action = s.Action ?? s.NotAction;
  const actions = action === undefined ? undefined : stringList(action, 'Action');
  for (const a of actions ?? []) {
    if (!ACTION.test(a)) throw new PolicyError(`Action '${a}' is not of the form service:action.`);
  }
  const resource = s.Resource ?? s.NotResource;
  const resources = resource === undefined ? undefined : stringList(resource, 'Resource');
  for (const r of resources ?? []) {
    if (r !== '*' && !r.startsWith('arn:')) throw new PolicyError(`Resource '${r}' must be * or an ARN.`);
  }
  const conditions = compileConditions(s.Condition);
  if (actions === undefined || resources === undefined) {
    // IAM refuses such identity policies. AWS KMS accepts such a key policy statement and
    // ignores it, so the key policy keeps it (GetKeyPolicy returns it) with no effect.
    if (kind === 'identity') throw new PolicyError(`Statement ${index + 1} is missing required field ${actions ? 'Resource' : 'Action'}.`);
    return undefined;
  }
  return {
    sid: s.Sid as string | undefined,
    effect: s.Effect,
    principals,
    notPrincipal: s.NotPrincipal !== undefined,
    actions: compilePatterns(actions, true),
    notAction: s.NotAction !== undefined,
    resources: compilePatterns(resources, false),
    notResource: s.NotResource !== undefined,
    conditions,
  };
}

/**
 * Validates and compiles a policy document. Throws PolicyError with the reason: malformed
 * JSON, an unsupported Version, a Statement that is not an object or non-empty list, a bad
 * Effect, Principal, Action, Resource or Condition, or (key policies) more than 32 KB.
 */
export function compilePolicy(source: string, kind: PolicyKind): CompiledPolicy {
  if (kind === 'key' && Buffer.byteLength(source, 'utf8') > MAX_KEY_POLICY_BYTES) {
    throw new PolicyError(`The key policy exceeds the maximum size of ${MAX_KEY_POLICY_BYTES} bytes.`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(source);
  } catch {
    throw new PolicyError('The policy is not valid JSON.');
  }
  if (!isObject(doc)) throw new PolicyError('The policy must be a JSON object.');
  for (const field of Object.keys(doc)) {
    if (!POLICY_FIELDS.has(field)) throw new PolicyError(`The policy has an unknown element '${field}'.`);
  }
  if (doc.Version !== undefined && !(typeof doc.Version === 'string' && VERSIONS.has(doc.Version))) {
    throw new PolicyError('The policy Version must be 2012-10-17 or 2008-10-17.');
  }
  if (doc.Id !== undefined && typeof doc.Id !== 'string') throw new PolicyError('The policy Id must be a string.');
  const raw = doc.Statement;
  const list = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  if (list.length === 0) throw new PolicyError('The policy must contain at least one Statement.');
  const statements: CompiledStatement[] = [];
  list.forEach((s, i) => {
    const c = compileStatement(s, kind, i);
    if (c) statements.push(c);
  });
  return { source, statements };
}
