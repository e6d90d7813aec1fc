import { describe, expect, it } from 'vitest';
import { decideIdentityAccess, decideKeyAccess, type Caller } from '../../src/authz/evaluate.js';
import {
  atLeastAsStrict, constraintsAllow, grantIdOfToken, newGrantId, newGrantToken, sameGrant,
} from '../../src/authz/grant-rules.js';
import { compileCondition, type Facts } from '../../src/authz/policy-conditions.js';
import { compilePolicy, PolicyError } from '../../src/authz/policy-document.js';
import { compileCidr, parseIp } from '../../src/authz/policy-match.js';

const A = '111122223333';
const B = '444455556666';
const KEY = `arn:aws:kms:us-east-1:${A}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
const alice: Caller = { arn: `arn:aws:iam::${A}:user/alice`, accountId: A, root: false };
const rootA: Caller = { arn: `arn:aws:iam::${A}:root`, accountId: A, root: true };
const carol: Caller = { arn: `arn:aws:iam::${B}:user/carol`, accountId: B, root: false };

const facts = (m: Record<string, string | string[]> = {}): Facts => {
  const lower = new Map(Object.entries(m).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v : [v]]));
  return { get: (k) => lower.get(k) };
};
const policy = (...Statement: object[]) => JSON.stringify({ Version: '2012-10-17', Statement });
const key = (...s: object[]) => compilePolicy(policy(...s), 'key');
const identity = (...s: object[]) => compilePolicy(policy(...s), 'identity');

describe('policy validation (MalformedPolicyDocumentException reasons)', () => {
  const bad: [string, string, RegExp][] = [
    ['not JSON', '{', /not valid JSON/],
    ['an array', '[]', /JSON object/],
    ['unknown top-level element', JSON.stringify({ Version: '2012-10-17', Statement: [], Foo: 1 }), /unknown element 'Foo'/],
    ['a bad Version', JSON.stringify({ Version: '2020-01-01', Statement: [] }), /Version/],
    ['no Statement', JSON.stringify({ Version: '2012-10-17' }), /at least one Statement/],
    ['an empty Statement list', JSON.stringify({ Version: '2012-10-17', Statement: [] }), /at least one Statement/],
    ['a Statement that is a string', JSON.stringify({ Statement: ['x'] }), /must be an object/],
    ['a bad Effect', policy({ Effect: 'Maybe', Principal: '*', Action: 'kms:*', Resource: '*' }), /Effect/],
    ['no Principal', policy({ Effect: 'Allow', Action: 'kms:*', Resource: '*' }), /no principal/],
    ['an invalid principal', policy({ Effect: 'Allow', Principal: { AWS: 'bob' }, Action: 'kms:*', Resource: '*' }), /invalid principals/],
    ['a group principal', policy({ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${A}:group/g` }, Action: 'kms:*', Resource: '*' }), /invalid principals/],
    ['Principal and NotPrincipal', policy({ Effect: 'Allow', Principal: '*', NotPrincipal: '*', Action: 'kms:*', Resource: '*' }), /both Principal and NotPrincipal/],
    ['Action and NotAction', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', NotAction: 'kms:Encrypt', Resource: '*' }), /both Action and NotAction/],
    ['an action without service', policy({ Effect: 'Allow', Principal: '*', Action: 'Encrypt', Resource: '*' }), /service:action/],
    ['an empty action list', policy({ Effect: 'Allow', Principal: '*', Action: [], Resource: '*' }), /Action must be/],
    ['a bad resource', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: 'key' }), /Resource/],
    ['an unknown operator', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { StringEqualz: { 'kms:CallerAccount': A } } }), /Unknown condition operator/],
    ['Null with IfExists', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { NullIfExists: { 'kms:CallerAccount': 'true' } } }), /Unknown condition operator/],
    ['an object condition value', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { StringEquals: { 'kms:CallerAccount': { a: 1 } } } }), /needs a string/],
    ['a bad CIDR', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { IpAddress: { 'aws:SourceIp': '10.0.0.0/33' } } }), /not a valid IP/],
    ['a bad number', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { NumericLessThan: { 'kms:RotationPeriodInDays': 'ten' } } }), /not a valid number/],
    ['a bad date', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { DateLessThan: { 'aws:CurrentTime': 'tomorrow' } } }), /not a valid date/],
    ['a bad Bool', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { Bool: { 'aws:SecureTransport': 'yes' } } }), /true or false/],
    ['ForAllValues with an encryption context key', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { 'ForAllValues:StringEquals': { 'kms:EncryptionContext:app': 'x' } } }), /OverlyPermissiveCondition/],
    ['an unknown statement element', policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*', Foo: 1 }), /unknown element 'Foo'/],
    ['more than 32 KB', policy({ Sid: 'x'.repeat(33_000), Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*' }), /32768 bytes/],
  ];
  it.each(bad)('refuses %s', (_name, doc, reason) => {
    expect(() => compilePolicy(doc, 'key')).toThrow(PolicyError);
    expect(() => compilePolicy(doc, 'key')).toThrow(reason);
  });

  it('identity policies may not name a Principal, and need Action and Resource', () => {
    expect(() => compilePolicy(policy({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*' }), 'identity')).toThrow(/prohibited field Principal/);
    expect(() => compilePolicy(policy({ Effect: 'Allow', Action: 'kms:*' }), 'identity')).toThrow(/missing required field Resource/);
  });

  it('accepts a key policy statement without Resource, which then has no effect (as AWS KMS does)', () => {
    const p = key({ Effect: 'Allow', Principal: { AWS: alice.arn }, Action: 'kms:*' });
    expect(p.statements).toHaveLength(0);
  });

  it('accepts a single Statement object, both Versions, Service principals and account ids', () => {
    expect(compilePolicy(JSON.stringify({ Version: '2008-10-17', Statement: { Effect: 'Allow', Principal: { AWS: A, Service: 'ec2.amazonaws.com' }, Action: 'kms:*', Resource: '*' } }), 'key').statements).toHaveLength(1);
  });
});

describe('condition operators', () => {
  const t = (op: string, key: string, values: unknown, ctx: Record<string, string | string[]>) => compileCondition(op, key, values)(facts(ctx));
  const cases: [string, string, unknown, Record<string, string | string[]>, boolean][] = [
    ['StringEquals', 'k:a', 'x', { 'k:a': 'x' }, true],
    ['StringEquals', 'k:a', 'x', { 'k:a': 'X' }, false],
    ['StringEquals', 'k:a', ['y', 'x'], { 'k:a': 'x' }, true],
    ['StringEquals', 'k:a', 'x', {}, false],
    ['StringNotEquals', 'k:a', 'x', { 'k:a': 'y' }, true],
    ['StringNotEquals', 'k:a', ['x', 'y'], { 'k:a': 'y' }, false],
    ['StringNotEquals', 'k:a', 'x', {}, true],
    ['StringEqualsIgnoreCase', 'k:a', 'X', { 'k:a': 'x' }, true],
    ['StringNotEqualsIgnoreCase', 'k:a', 'X', { 'k:a': 'x' }, false],
    ['StringLike', 'k:a', 'ab*', { 'k:a': 'abc' }, true],
    ['StringLike', 'k:a', 'a?c', { 'k:a': 'abc' }, true],
    ['StringLike', 'k:a', 'a?c', { 'k:a': 'abbc' }, false],
    ['StringNotLike', 'k:a', 'ab*', { 'k:a': 'xbc' }, true],
    ['StringEqualsIfExists', 'k:a', 'x', {}, true],
    ['StringEqualsIfExists', 'k:a', 'x', { 'k:a': 'y' }, false],
    ['NumericEquals', 'k:n', '10', { 'k:n': '10' }, true],
    ['NumericNotEquals', 'k:n', '10', { 'k:n': '11' }, true],
    ['NumericLessThan', 'k:n', 10, { 'k:n': '9' }, true],
    ['NumericLessThanEquals', 'k:n', 10, { 'k:n': '10' }, true],
    ['NumericGreaterThan', 'k:n', 10, { 'k:n': '10' }, false],
    ['NumericGreaterThanEquals', 'k:n', 10, { 'k:n': '10.0' }, true],
    ['NumericLessThan', 'k:n', 10, { 'k:n': 'ten' }, false],
    ['DateEquals', 'k:d', '2024-01-01T00:00:00Z', { 'k:d': '1704067200' }, true],
    ['DateNotEquals', 'k:d', '2024-01-01T00:00:00Z', { 'k:d': '2024-01-02T00:00:00Z' }, true],
    ['DateLessThan', 'k:d', '2024-01-01T00:00:00Z', { 'k:d': '2023-12-31T23:59:59Z' }, true],
    ['DateLessThanEquals', 'k:d', '2024-01-01', { 'k:d': '2024-01-01T00:00:00Z' }, true],
    ['DateGreaterThan', 'k:d', '2024-01-01T00:00:00Z', { 'k:d': '2023-12-31T23:59:59Z' }, false],
    ['DateGreaterThanEquals', 'k:d', '1704067200', { 'k:d': '2024-01-01T00:00:00Z' }, true],
    ['Bool', 'k:b', true, { 'k:b': 'true' }, true],
    ['Bool', 'k:b', 'false', { 'k:b': 'true' }, false],
    ['BoolIfExists', 'k:b', 'false', {}, true],
    ['BinaryEquals', 'k:x', 'QUJD', { 'k:x': 'QUJD' }, true],
    ['IpAddress', 'aws:SourceIp', '10.0.0.0/8', { 'aws:SourceIp': '10.20.30.40' }, true],
    ['IpAddress', 'aws:SourceIp', '10.0.0.0/8', { 'aws:SourceIp': '11.0.0.1' }, false],
    ['IpAddress', 'aws:SourceIp', '2001:db8::/32', { 'aws:SourceIp': '2001:db8:1::5' }, true],
    ['IpAddress', 'aws:SourceIp', '127.0.0.1', { 'aws:SourceIp': '::ffff:127.0.0.1' }, true],
    ['NotIpAddress', 'aws:SourceIp', ['10.0.0.0/8', '192.168.0.0/16'], { 'aws:SourceIp': '127.0.0.1' }, true],
    ['NotIpAddress', 'aws:SourceIp', '127.0.0.0/8', { 'aws:SourceIp': '127.0.0.1' }, false],
    ['ArnEquals', 'aws:PrincipalArn', `arn:aws:iam::${A}:user/alice`, { 'aws:PrincipalArn': alice.arn }, true],
    ['ArnLike', 'aws:PrincipalArn', 'arn:aws:iam::*:user/a*', { 'aws:PrincipalArn': alice.arn }, true],
    ['ArnLike', 'aws:PrincipalArn', 'arn:aws:iam::*:role/*', { 'aws:PrincipalArn': alice.arn }, false],
    ['ArnNotEquals', 'aws:PrincipalArn', `arn:aws:iam::${A}:user/bob`, { 'aws:PrincipalArn': alice.arn }, true],
    ['ArnNotLike', 'aws:PrincipalArn', `arn:aws:iam::${A}:*`, { 'aws:PrincipalArn': alice.arn }, false],
    ['ArnLike', 'aws:PrincipalArn', 'arn:aws:iam::*', { 'aws:PrincipalArn': 'not-an-arn' }, false],
    ['Null', 'k:a', 'true', {}, true],
    ['Null', 'k:a', 'true', { 'k:a': 'x' }, false],
    ['Null', 'k:a', false, { 'k:a': 'x' }, true],
    ['ForAnyValue:StringEquals', 'k:m', ['a', 'z'], { 'k:m': ['x', 'a'] }, true],
    ['ForAnyValue:StringEquals', 'k:m', 'a', {}, false],
    ['ForAnyValue:StringNotEquals', 'k:m', 'a', { 'k:m': ['a', 'b'] }, true],
    ['ForAllValues:StringEquals', 'k:m', ['a', 'b'], { 'k:m': ['a', 'b'] }, true],
    ['ForAllValues:StringEquals', 'k:m', ['a'], { 'k:m': ['a', 'b'] }, false],
    ['ForAllValues:StringEquals', 'k:m', ['a'], {}, true],
    ['ForAllValues:StringNotEquals', 'k:m', 'a', { 'k:m': ['a', 'b'] }, false],
    ['ForAllValues:StringLike', 'k:m', 'a*', { 'k:m': ['ab', 'ac'] }, true],
    ['ForAnyValue:StringLikeIfExists', 'k:m', 'a*', {}, true],
    ['StringEquals', 'K:A', 'x', { 'k:a': 'x' }, true],
  ];
  it.each(cases)('%s %s %j on %j → %s', (op, k, v, ctx, expected) => {
    expect(t(op, k, v, ctx)).toBe(expected);
  });

  it('a multi-valued key without a set operator never matches (as iam-simulate reads IAM)', () => {
    expect(t('StringEquals', 'kms:EncryptionContextKeys', 'a', { 'kms:EncryptionContextKeys': ['a'] })).toBe(false);
    expect(t('StringNotEquals', 'kms:EncryptionContextKeys', 'c', { 'kms:EncryptionContextKeys': ['a', 'b'] })).toBe(false);
    expect(t('StringNotEquals', 'kms:EncryptionContextKeys', 'c', {})).toBe(true);
  });

  it('parses IPv4, IPv6 and mapped addresses, and CIDR prefixes of any length', () => {
    expect(parseIp('::ffff:10.1.2.3')).toEqual(parseIp('10.1.2.3'));
    expect(parseIp('::1')?.v).toBe(6);
    expect(parseIp('1.2.3')).toBeUndefined();
    expect(compileCidr('0.0.0.0/0')?.('8.8.8.8')).toBe(true);
    expect(compileCidr('::/0')?.('8.8.8.8')).toBe(false);
    expect(compileCidr('10.0.0.1/32')?.('10.0.0.1')).toBe(true);
    expect(compileCidr('fe80::/10')?.('fe80::1%eth0')).toBe(true);
  });
});

describe('evaluation', () => {
  const rootStatement = { Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${A}:root` }, Action: 'kms:*', Resource: '*' };
  const decide = (caller: Caller, kp: ReturnType<typeof key>, ids: ReturnType<typeof identity>[] = [], action = 'kms:encrypt', f = facts()) =>
    decideKeyAccess({ caller, action, keyArn: KEY, keyAccount: A, keyPolicy: kp, identity: ids, facts: f });

  it('the default key policy: the root is allowed, a user only through an identity policy', () => {
    const kp = key(rootStatement);
    expect(decide(rootA, kp)).toEqual({ allowed: true, via: 'policy' });
    expect(decide(alice, kp)).toEqual({ allowed: false, denial: 'no-identity-policy' });
    expect(decide(alice, kp, [identity({ Effect: 'Allow', Action: 'kms:Encrypt', Resource: KEY })]).allowed).toBe(true);
    expect(decide(alice, kp, [identity({ Effect: 'Allow', Action: 'kms:Encrypt', Resource: `arn:aws:kms:*:${A}:key/*` })]).allowed).toBe(true);
    expect(decide(alice, kp, [identity({ Effect: 'Allow', Action: 'kms:Decrypt', Resource: KEY })]).allowed).toBe(false);
  });

  it('a key policy naming the user allows it directly; one not naming anyone of the account allows nothing', () => {
    expect(decide(alice, key({ Effect: 'Allow', Principal: { AWS: alice.arn }, Action: 'kms:Encrypt', Resource: '*' })).allowed).toBe(true);
    expect(decide(rootA, key({ Effect: 'Allow', Principal: { AWS: alice.arn }, Action: 'kms:*', Resource: '*' }))).toEqual({
      allowed: false, denial: 'no-resource-policy',
    });
  });

  it('explicit Deny wins over every Allow, in the key policy or in an identity policy', () => {
    const kp = key(rootStatement, { Effect: 'Allow', Principal: { AWS: alice.arn }, Action: 'kms:*', Resource: '*' },
      { Effect: 'Deny', Principal: '*', Action: 'kms:Encrypt', Resource: '*' });
    expect(decide(alice, kp)).toEqual({ allowed: false, denial: 'explicit-deny-resource' });
    expect(decide(rootA, kp)).toEqual({ allowed: false, denial: 'explicit-deny-resource' });
    const kp2 = key({ Effect: 'Allow', Principal: { AWS: alice.arn }, Action: 'kms:*', Resource: '*' });
    expect(decide(alice, kp2, [identity({ Effect: 'Deny', Action: 'kms:*', Resource: '*' })])).toEqual({ allowed: false, denial: 'explicit-deny-identity' });
    expect(decideKeyAccess({ caller: alice, action: 'kms:encrypt', keyArn: KEY, keyAccount: A, keyPolicy: kp, identity: [], facts: facts(), grant: () => true }).allowed).toBe(false);
  });

  it('NotAction, NotResource and NotPrincipal', () => {
    expect(decide(alice, key({ Effect: 'Allow', Principal: { AWS: alice.arn }, NotAction: 'kms:Decrypt', Resource: '*' })).allowed).toBe(true);
    expect(decide(alice, key({ Effect: 'Allow', Principal: { AWS: alice.arn }, NotAction: 'kms:Enc*', Resource: '*' })).allowed).toBe(false);
    expect(decide(alice, key({ Effect: 'Allow', Principal: { AWS: alice.arn }, Action: 'kms:*', NotResource: KEY })).allowed).toBe(false);
    const np = key({ Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*' }, { Effect: 'Deny', NotPrincipal: { AWS: alice.arn }, Action: 'kms:*', Resource: '*' });
    expect(decide(alice, np).allowed).toBe(true);
    expect(decide(rootA, np).allowed).toBe(false);
  });

  it('action names match without letter case and with wildcards; unknown actions are judged like any other', () => {
    const kp = key({ Effect: 'Allow', Principal: { AWS: alice.arn }, Action: ['KMS:describe*', 'kms:GenerateDataKey*'], Resource: '*' });
    expect(decide(alice, kp, [], 'kms:describekey').allowed).toBe(true);
    expect(decide(alice, kp, [], 'kms:generatedatakeywithoutplaintext').allowed).toBe(true);
    expect(decide(alice, kp, [], 'kms:encrypt').allowed).toBe(false);
    expect(decide(alice, key({ Effect: 'Allow', Principal: { AWS: alice.arn }, Action: 'kms:*', Resource: '*' }), [], 'kms:somefutureoperation').allowed).toBe(true);
  });

  it('another account: key policy and identity policy must both allow; the other root needs only the key policy', () => {
    const rootB: Caller = { arn: `arn:aws:iam::${B}:root`, accountId: B, root: true };
    const kp = key(rootStatement, { Effect: 'Allow', Principal: { AWS: B }, Action: 'kms:Encrypt', Resource: '*' });
    expect(decide(carol, kp)).toEqual({ allowed: false, denial: 'no-identity-policy' });
    expect(decide(carol, kp, [identity({ Effect: 'Allow', Action: 'kms:Encrypt', Resource: '*' })]).allowed).toBe(true);
    expect(decide(rootB, kp).allowed).toBe(true);
    const direct = key({ Effect: 'Allow', Principal: { AWS: carol.arn }, Action: 'kms:Encrypt', Resource: '*' });
    expect(decide(carol, direct)).toEqual({ allowed: false, denial: 'no-identity-policy' });
    expect(decide(carol, key(rootStatement))).toEqual({ allowed: false, denial: 'no-resource-policy' });
  });

  it('a grant is consulted only when policies do not allow, and is told whether identity policies allow', () => {
    const seen: boolean[] = [];
    const r = decideKeyAccess({
      caller: alice, action: 'kms:encrypt', keyArn: KEY, keyAccount: A, keyPolicy: key(rootStatement), identity: [], facts: facts(),
      grant: (idAllows) => {
        seen.push(idAllows);
        return true;
      },
    });
    expect(r).toEqual({ allowed: true, via: 'grant' });
    expect(seen).toEqual([false]);
  });

  it('operations on no key, or on an alias, are judged by identity policies only', () => {
    expect(decideIdentityAccess(rootA, 'kms:listkeys', '*', [], facts()).allowed).toBe(true);
    expect(decideIdentityAccess(alice, 'kms:listkeys', '*', [], facts())).toEqual({ allowed: false, denial: 'no-identity-policy' });
    const alias = `arn:aws:kms:us-east-1:${A}:alias/app-*`;
    const ids = [identity({ Effect: 'Allow', Action: 'kms:CreateAlias', Resource: alias })];
    expect(decideIdentityAccess(alice, 'kms:createalias', `arn:aws:kms:us-east-1:${A}:alias/app-1`, ids, facts()).allowed).toBe(true);
    expect(decideIdentityAccess(alice, 'kms:createalias', `arn:aws:kms:us-east-1:${A}:alias/other`, ids, facts()).allowed).toBe(false);
    expect(decideIdentityAccess(alice, 'kms:listkeys', '*', [identity({ Effect: 'Allow', Action: 'kms:List*', Resource: `arn:aws:kms:*:${A}:key/*` })], facts()).allowed).toBe(false);
  });

  it('conditions of one statement are AND-ed, statements are OR-ed', () => {
    const kp = key({
      Effect: 'Allow', Principal: { AWS: alice.arn }, Action: 'kms:*', Resource: '*',
      Condition: { StringEquals: { 'kms:CallerAccount': A, 'kms:EncryptionAlgorithm': 'SYMMETRIC_DEFAULT' }, Bool: { 'aws:SecureTransport': 'false' } },
    });
    expect(decide(alice, kp, [], 'kms:encrypt', facts({ 'kms:CallerAccount': A, 'kms:EncryptionAlgorithm': 'SYMMETRIC_DEFAULT', 'aws:SecureTransport': 'false' })).allowed).toBe(true);
    expect(decide(alice, kp, [], 'kms:encrypt', facts({ 'kms:CallerAccount': A, 'aws:SecureTransport': 'false' })).allowed).toBe(false);
  });
});

describe('grant rules', () => {
  it('tokens name their grant and are recognised; anything else is not a token', () => {
    const id = newGrantId();
    const token = newGrantToken(id);
    expect(grantIdOfToken(token)).toBe(id);
    expect(newGrantToken(id)).not.toBe(token);
    expect(grantIdOfToken('not a token')).toBeUndefined();
    expect(grantIdOfToken(Buffer.from('x'.repeat(57)).toString('base64'))).toBeUndefined();
  });

  it('EncryptionContextSubset and EncryptionContextEquals: keys without case, values exact', () => {
    expect(constraintsAllow({ EncryptionContextSubset: { Tenant: 'a' } }, { tenant: 'a', other: 'x' })).toBe(true);
    expect(constraintsAllow({ EncryptionContextSubset: { tenant: 'a' } }, { tenant: 'A' })).toBe(false);
    expect(constraintsAllow({ EncryptionContextSubset: { tenant: 'a' } }, undefined)).toBe(false);
    expect(constraintsAllow({ EncryptionContextEquals: { tenant: 'a' } }, { tenant: 'a' })).toBe(true);
    expect(constraintsAllow({ EncryptionContextEquals: { tenant: 'a' } }, { tenant: 'a', other: 'x' })).toBe(false);
    expect(constraintsAllow(undefined, undefined)).toBe(true);
  });

  it('a child grant is at least as strict: subset may grow or become equals, equals stays', () => {
    const sub = { EncryptionContextSubset: { dept: 'IT' } };
    expect(atLeastAsStrict(sub, { EncryptionContextSubset: { dept: 'IT', app: 'x' } })).toBe(true);
    expect(atLeastAsStrict(sub, { EncryptionContextEquals: { dept: 'IT' } })).toBe(true);
    expect(atLeastAsStrict(sub, undefined)).toBe(false);
    expect(atLeastAsStrict(sub, { EncryptionContextSubset: { app: 'x' } })).toBe(false);
    const eq = { EncryptionContextEquals: { dept: 'IT' } };
    expect(atLeastAsStrict(eq, eq)).toBe(true);
    expect(atLeastAsStrict(eq, { EncryptionContextSubset: { dept: 'IT' } })).toBe(false);
    expect(atLeastAsStrict(eq, { EncryptionContextEquals: { dept: 'IT', app: 'x' } })).toBe(false);
    expect(atLeastAsStrict(undefined, undefined)).toBe(true);
  });

  it('Name idempotency compares every parameter, operations as a set', () => {
    const g = { grantId: 'g', keyId: 'k', name: 'n', granteePrincipal: alice.arn, operations: ['Encrypt', 'Decrypt'], issuingAccount: A, createdAt: 0, token: 't' };
    expect(sameGrant(g, { name: 'n', granteePrincipal: alice.arn, operations: ['Decrypt', 'Encrypt'] })).toBe(true);
    expect(sameGrant(g, { name: 'n', granteePrincipal: alice.arn, operations: ['Decrypt'] })).toBe(false);
    expect(sameGrant(g, { name: 'm', granteePrincipal: alice.arn, operations: ['Decrypt', 'Encrypt'] })).toBe(false);
  });
});
