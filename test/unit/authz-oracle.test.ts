/**
 * Differential test: our evaluator against @cloud-copilot/iam-simulate, a maintained AWS IAM
 * policy simulator, on randomly generated key policies, identity policies and requests.
 *
 * Known, deliberate differences are kept out of the generator and listed here:
 * - iam-simulate cannot see `kms:EncryptionContext:<key>` (its key-variable matching handles
 *   only `/`-separated keys), so those conditions are tested against AWS's documentation
 *   elsewhere (unit and e2e tables), not here;
 * - iam-simulate requires identity policies for the account root; AWS (and we) let the root do
 *   whatever its account's key policy grants to the account, so roots are not generated here;
 * - iam-simulate reads an account in NotPrincipal as excluding every principal of the account;
 *   the IAM User Guide's NotPrincipal example has to list the user besides the account, so we
 *   read it as excluding the account root only. NotPrincipal is generated with user and role
 *   ARNs only.
 */
import { runSimulation } from '@cloud-copilot/iam-simulate';
import { describe, expect, it } from 'vitest';
import { decideKeyAccess, type Caller } from '../../src/authz/evaluate.js';
import type { Facts } from '../../src/authz/policy-conditions.js';
import { compilePolicy } from '../../src/authz/policy-document.js';

const A = '111122223333';
const B = '444455556666';
const KEY = `arn:aws:kms:us-east-1:${A}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
const OTHER_KEY = `arn:aws:kms:us-east-1:${A}:key/0987dcba-09fe-87dc-65ba-ab0987654321`;
const CASES = 3000;

/** Small seeded PRNG (mulberry32), so a failure reproduces. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T,
    chance: (p: number) => next() < p,
  };
}

const CALLERS: Caller[] = [
  { arn: `arn:aws:iam::${A}:user/alice`, accountId: A, root: false },
  { arn: `arn:aws:iam::${A}:user/bob`, accountId: A, root: false },
  { arn: `arn:aws:iam::${A}:role/app`, accountId: A, root: false },
  { arn: `arn:aws:iam::${B}:user/carol`, accountId: B, root: false },
];
const PRINCIPALS = [
  '*', { AWS: '*' }, { AWS: `arn:aws:iam::${A}:root` }, { AWS: A }, { AWS: `arn:aws:iam::${B}:root` },
  { AWS: `arn:aws:iam::${A}:user/alice` }, { AWS: [`arn:aws:iam::${A}:role/app`, `arn:aws:iam::${B}:user/carol`] },
];
const NOT_PRINCIPALS = [
  { AWS: `arn:aws:iam::${A}:user/alice` }, { AWS: [`arn:aws:iam::${A}:role/app`, `arn:aws:iam::${B}:user/carol`] },
];
const ACTIONS = ['kms:*', 'kms:Encrypt', 'kms:Decrypt', ['kms:Encrypt', 'kms:DescribeKey'], 'kms:Enc*', 'kms:Describe*', 'kms:*crypt'];
const RESOURCES = ['*', KEY, OTHER_KEY, `arn:aws:kms:us-east-1:${A}:key/*`, `arn:aws:kms:*:${B}:key/*`];
const REQUEST_ACTIONS = ['kms:Encrypt', 'kms:Decrypt', 'kms:DescribeKey'];

const CONDITIONS: [string, string, unknown][] = [
  ['StringEquals', 'kms:CallerAccount', A],
  ['StringNotEquals', 'kms:CallerAccount', B],
  ['StringEquals', 'kms:EncryptionAlgorithm', 'SYMMETRIC_DEFAULT'],
  ['StringEqualsIfExists', 'kms:EncryptionAlgorithm', 'RSAES_OAEP_SHA_256'],
  ['StringEqualsIgnoreCase', 'aws:PrincipalArn', `ARN:AWS:IAM::${A}:USER/ALICE`],
  ['StringNotEqualsIgnoreCase', 'aws:PrincipalArn', `arn:aws:iam::${A}:USER/bob`],
  ['StringLike', 'aws:PrincipalArn', `arn:aws:iam::${A}:*`],
  ['StringNotLike', 'aws:PrincipalArn', '*:role/*'],
  ['StringLike', 'kms:RequestAlias', 'alias/app-*'],
  ['Null', 'kms:RequestAlias', 'true'],
  ['Null', 'kms:RequestAlias', 'false'],
  ['ForAnyValue:StringEquals', 'kms:EncryptionContextKeys', ['tenant', 'app']],
  ['ForAllValues:StringEquals', 'kms:EncryptionContextKeys', ['tenant', 'app']],
  ['ForAnyValue:StringLike', 'kms:EncryptionContextKeys', 't*'],
  ['ForAllValues:StringNotEquals', 'kms:EncryptionContextKeys', 'secret'],
  ['ForAnyValue:StringNotEquals', 'kms:EncryptionContextKeys', 'tenant'],
  ['StringEquals', 'kms:EncryptionContextKeys', 'tenant'],
  ['ForAnyValue:StringEquals', 'kms:ResourceAliases', 'alias/app-1'],
  ['StringEquals', 'aws:ResourceTag/team', 'blue'],
  ['StringNotEquals', 'aws:ResourceTag/team', 'blue'],
  ['IpAddress', 'aws:SourceIp', ['10.0.0.0/8', '127.0.0.1/32']],
  ['NotIpAddress', 'aws:SourceIp', '10.0.0.0/8'],
  ['DateGreaterThan', 'aws:CurrentTime', '2024-06-01T00:00:00Z'],
  ['DateLessThanEquals', 'aws:CurrentTime', '2024-06-01T00:00:00Z'],
  ['Bool', 'aws:SecureTransport', 'true'],
  ['BoolIfExists', 'aws:SecureTransport', 'false'],
  ['ArnLike', 'aws:PrincipalArn', `arn:aws:iam::*:user/*`],
  ['ArnEquals', 'aws:PrincipalArn', `arn:aws:iam::${B}:user/carol`],
  ['ArnNotLike', 'aws:PrincipalArn', `arn:aws:iam::${A}:*`],
  ['ArnNotEquals', 'aws:PrincipalArn', `arn:aws:iam::${A}:role/app`],
  ['StringEquals', 'aws:PrincipalAccount', A],
  ['StringEquals', 'kms:KeySpec', 'SYMMETRIC_DEFAULT'],
  ['StringEquals', 'kms:KeyOrigin', 'EXTERNAL'],
  ['StringEquals', 'kms:KeyUsage', 'ENCRYPT_DECRYPT'],
];

function randomConditions(r: ReturnType<typeof rng>) {
  if (!r.chance(0.6)) return undefined;
  const cond: Record<string, Record<string, unknown>> = {};
  const n = 1 + Math.floor(r.next() * 2);
  for (let i = 0; i < n; i++) {
    const [op, key, value] = r.pick(CONDITIONS);
    (cond[op] ??= {})[key] = value;
  }
  return cond;
}

function randomStatement(r: ReturnType<typeof rng>, kind: 'key' | 'identity') {
  const s: Record<string, unknown> = { Effect: r.chance(0.8) ? 'Allow' : 'Deny' };
  if (kind === 'key') {
    if (r.chance(0.9)) s.Principal = r.pick(PRINCIPALS);
    else s.NotPrincipal = r.pick(NOT_PRINCIPALS);
  }
  s[r.chance(0.9) ? 'Action' : 'NotAction'] = r.pick(ACTIONS);
  s.Resource = kind === 'key' ? r.pick(['*', '*', KEY, OTHER_KEY]) : r.pick(RESOURCES);
  const c = randomConditions(r);
  if (c) s.Condition = c;
  return s;
}

function randomContext(r: ReturnType<typeof rng>, caller: Caller): Record<string, string | string[]> {
  const ctx: Record<string, string | string[]> = {
    'kms:CallerAccount': caller.accountId,
    'aws:PrincipalArn': caller.arn,
    'aws:PrincipalAccount': caller.accountId,
    'aws:SourceIp': r.pick(['127.0.0.1', '10.1.2.3', '192.168.1.1']),
    'aws:CurrentTime': r.pick(['2024-01-01T00:00:00Z', '2025-01-01T00:00:00Z']),
    'aws:SecureTransport': r.pick(['true', 'false']),
    'kms:KeySpec': 'SYMMETRIC_DEFAULT',
    'kms:KeyOrigin': 'AWS_KMS',
    'kms:KeyUsage': 'ENCRYPT_DECRYPT',
    'kms:EncryptionAlgorithm': 'SYMMETRIC_DEFAULT',
  };
  if (r.chance(0.7)) ctx['kms:EncryptionContextKeys'] = r.pick([['tenant'], ['tenant', 'app'], ['app', 'secret'], ['x']]);
  if (r.chance(0.5)) ctx['kms:RequestAlias'] = r.pick(['alias/app-1', 'alias/other']);
  if (r.chance(0.5)) ctx['kms:ResourceAliases'] = r.pick([['alias/app-1'], ['alias/app-1', 'alias/b'], ['alias/c']]);
  if (r.chance(0.5)) ctx['aws:ResourceTag/team'] = r.pick(['blue', 'red']);
  return ctx;
}

function factsOf(ctx: Record<string, string | string[]>, ignored: string[]): Facts {
  const skip = new Set(ignored.map((k) => k.toLowerCase()));
  const m = new Map<string, string[]>();
  for (const [k, v] of Object.entries(ctx)) {
    if (!skip.has(k.toLowerCase())) m.set(k.toLowerCase(), Array.isArray(v) ? v : [v]);
  }
  return { get: (k) => m.get(k) };
}

describe('differential test against @cloud-copilot/iam-simulate', () => {
  it(`agrees on ${CASES} random policy/request combinations`, { timeout: 60_000 }, async () => {
    const r = rng(20240601);
    const disagreements: string[] = [];
    let allowed = 0;
    for (let i = 0; i < CASES; i++) {
      const keyPolicy = { Version: '2012-10-17', Statement: Array.from({ length: 1 + Math.floor(r.next() * 3) }, () => randomStatement(r, 'key')) };
      const identityPolicies = r.chance(0.7)
        ? [{ Version: '2012-10-17', Statement: Array.from({ length: 1 + Math.floor(r.next() * 2) }, () => randomStatement(r, 'identity')) }]
        : [];
      const caller = r.pick(CALLERS);
      const action = r.pick(REQUEST_ACTIONS);
      const ctx = randomContext(r, caller);
      const sim = await runSimulation(
        {
          request: { principal: caller.arn, action, resource: { resource: KEY, accountId: A }, contextVariables: ctx },
          identityPolicies: identityPolicies.map((policy, n) => ({ name: `p${n}`, policy })),
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          resourcePolicy: keyPolicy,
        },
        {},
      );
      if (sim.resultType !== 'single') throw new Error(`simulation failed: ${JSON.stringify(sim)}`);
      const ours = decideKeyAccess({
        caller,
        action: action.toLowerCase(),
        keyArn: KEY,
        keyAccount: A,
        keyPolicy: compilePolicy(JSON.stringify(keyPolicy), 'key'),
        identity: identityPolicies.map((p) => compilePolicy(JSON.stringify(p), 'identity')),
        facts: factsOf(ctx, sim.result.ignoredContextKeys ?? []),
      });
      const theirs = sim.overallResult;
      const oursText = ours.allowed ? 'Allowed' : ours.denial.startsWith('explicit') ? 'ExplicitlyDenied' : 'ImplicitlyDenied';
      if (ours.allowed) allowed++;
      if (oursText !== theirs) {
        disagreements.push(`#${i} ${caller.arn} ${action} ours=${oursText} iam-simulate=${theirs}\n` +
          `  key policy ${JSON.stringify(keyPolicy)}\n  identity ${JSON.stringify(identityPolicies)}\n  context ${JSON.stringify(ctx)}`);
      }
    }
    expect(disagreements.slice(0, 5).join('\n')).toBe('');
    // The generator must exercise both outcomes substantially.
    expect(allowed).toBeGreaterThan(CASES * 0.1);
    expect(allowed).toBeLessThan(CASES * 0.9);
  });
});
