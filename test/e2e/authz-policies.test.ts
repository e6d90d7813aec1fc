/**
 * Authorization through the real daemon: a table of allow/deny cases, each with its own key
 * (and key policy), its own caller signing its own requests (a user or role of account A, the
 * root of A, the root or a user of account B) and, where given, the caller's identity policy.
 * Every condition operator and condition key of issue #3 has a case here or, for operations
 * other branches add (Sign, GenerateMac, rotation, deletion, import), in the engine-level table
 * at the end, which drives the daemon's own authorization engine with those requests' inputs.
 */
import {
  CreateAliasCommand, CreateGrantCommand, CreateKeyCommand, DecryptCommand, DeleteAliasCommand, DescribeKeyCommand,
  EnableKeyCommand, EncryptCommand, GenerateDataKeyCommand, GenerateDataKeyWithoutPlaintextCommand, GenerateRandomCommand,
  GetKeyPolicyCommand, KMSClient, ListAliasesCommand, ListGrantsCommand, ListKeyPoliciesCommand, ListKeysCommand,
  PutKeyPolicyCommand, ReEncryptCommand, TagResourceCommand, UpdateAliasCommand, type Tag,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorize } from '../../src/authz/authorize.js';
import type { RequestContext } from '../../src/kms/context.js';
import { ACCOUNT as A, failure, REGION, startHarness, type Harness } from '../helpers/daemon.js';
import { createPrincipal, OTHER_ACCOUNT as B, policyDoc, type TestPrincipal } from '../helpers/principals.js';

let h: Harness;
let otherRoot: TestPrincipal;
let otherKey: string;
beforeAll(async () => {
  h = await startHarness();
  otherRoot = await createPrincipal(h, { type: 'root', account: B });
  otherKey = (await h.kms.send(new CreateKeyCommand({ Description: 'another key of account A' }))).KeyMetadata!.Arn!;
});
afterAll(async () => {
  await h?.stop();
});

const ROOT_A = `arn:aws:iam::${A}:root`;
const ROOT_B = `arn:aws:iam::${B}:root`;
const P = Buffer.from('authz test');
const EC = { tenant: 'a' };

interface Env {
  me: string;
  key: string;
  keyId: string;
  alias: string;
  otherKey: string;
  /** Encrypted under the key with EC, before the case's policy was set. */
  blob: Uint8Array;
}
type Statements = (e: Env) => object[];
type Caller = 'user' | 'role' | 'root' | 'otherRoot' | 'otherUser';

interface Case {
  name: string;
  caller?: Caller;
  keyPolicy?: Statements;
  identity?: Statements;
  tags?: Tag[];
  alias?: boolean;
  act: (kms: KMSClient, e: Env) => Promise<unknown>;
  /** 'allow', or the AWS error name expected. */
  expect: 'allow' | string;
  /** For AccessDeniedException: the expected end of the message. */
  because?: string | ((e: Env) => string);
}

// ---- statement and action helpers ----
const allow = (principal: string | string[], action: string | string[] = 'kms:Encrypt', extra: object = {}) => ({
  Effect: 'Allow', Principal: principal === '*' ? '*' : { AWS: principal }, Action: action, Resource: '*', ...extra,
});
const deny = (principal: string | string[], action: string | string[] = 'kms:Encrypt', extra: object = {}) => ({
  ...allow(principal, action, extra), Effect: 'Deny',
});
const idAllow = (action: string | string[], resource: string | string[] = '*', extra: object = {}) => ({
  Effect: 'Allow', Action: action, Resource: resource, ...extra,
});
const idDeny = (action: string | string[], resource: string | string[] = '*', extra: object = {}) => ({
  ...idAllow(action, resource, extra), Effect: 'Deny',
});
const cond = (op: string, key: string, value: unknown) => ({ Condition: { [op]: { [key]: value } } });
const rootAll = allow(ROOT_A, 'kms:*');

const encrypt = (ec?: Record<string, string>, keyOf: (e: Env) => string = (e) => e.key) => (kms: KMSClient, e: Env) =>
  kms.send(new EncryptCommand({ KeyId: keyOf(e), Plaintext: P, EncryptionContext: ec }));
const decrypt = (kms: KMSClient, e: Env) => kms.send(new DecryptCommand({ CiphertextBlob: e.blob, EncryptionContext: EC }));
const describeKey = (kms: KMSClient, e: Env) => kms.send(new DescribeKeyCommand({ KeyId: e.key }));

const noResource = (action: string) => `because no resource-based policy allows the kms:${action} action`;
const noIdentity = (action: string) => `because no identity-based policy allows the kms:${action} action`;
const DENY_RESOURCE = 'with an explicit deny in a resource-based policy';
const DENY_IDENTITY = 'with an explicit deny in an identity-based policy';

/** A keyed condition on Encrypt, allowed to the caller by the key policy. */
const onEncrypt = (name: string, op: string, key: string, value: unknown, ec: Record<string, string> | undefined, ok: boolean): Case => ({
  name,
  keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', cond(op, key, value))],
  act: encrypt(ec),
  expect: ok ? 'allow' : 'AccessDeniedException',
  // The key policy allows the account (rootAll), so what is missing is an identity policy.
  because: ok ? undefined : noIdentity('Encrypt'),
});

const cases: Case[] = [
  // ---- principals and delegation (same account) ----
  { name: 'default key policy, user without identity policy', act: encrypt(), expect: 'AccessDeniedException', because: noIdentity('Encrypt') },
  { name: 'default key policy, identity policy allows Encrypt on the key ARN', identity: (e) => [idAllow('kms:Encrypt', e.key)], act: encrypt(), expect: 'allow' },
  { name: 'default key policy, identity policy allows kms:* on key/*', identity: () => [idAllow('kms:*', `arn:aws:kms:${REGION}:${A}:key/*`)], act: encrypt(), expect: 'allow' },
  { name: 'default key policy, identity policy allows Decrypt only', identity: (e) => [idAllow('kms:Decrypt', e.key)], act: encrypt(), expect: 'AccessDeniedException', because: noIdentity('Encrypt') },
  { name: 'default key policy, identity policy on another key', identity: (e) => [idAllow('kms:*', e.otherKey)], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'key policy names the user', keyPolicy: (e) => [rootAll, allow(e.me)], act: encrypt(), expect: 'allow' },
  { name: 'key policy Principal "*"', keyPolicy: () => [rootAll, allow('*')], act: encrypt(), expect: 'allow' },
  { name: 'key policy Principal {AWS: "*"}', keyPolicy: () => [rootAll, allow(['*'])], act: encrypt(), expect: 'allow' },
  { name: 'key policy names the account id, identity policy allows', keyPolicy: () => [allow(A, 'kms:*')], identity: () => [idAllow('kms:Encrypt')], act: encrypt(), expect: 'allow' },
  { name: 'key policy names the account id, no identity policy', keyPolicy: () => [allow(A, 'kms:*')], act: encrypt(), expect: 'AccessDeniedException', because: noIdentity('Encrypt') },
  { name: 'key policy names another user only', keyPolicy: () => [allow(`arn:aws:iam::${A}:user/somebody-else`, 'kms:*')], act: encrypt(), expect: 'AccessDeniedException', because: noResource('Encrypt') },
  { name: 'key policy names the role; the role calls', caller: 'role', keyPolicy: (e) => [rootAll, allow(e.me)], act: encrypt(), expect: 'allow' },
  { name: 'key policy names a user; a role of the same name prefix calls', caller: 'role', keyPolicy: (e) => [rootAll, allow(e.me.replace(':role/', ':user/'))], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'the account root, default key policy', caller: 'root', act: encrypt(), expect: 'allow' },
  { name: 'the account root, key policy without the account', caller: 'root', keyPolicy: () => [allow(`arn:aws:iam::${A}:user/admin`, 'kms:*')], act: encrypt(), expect: 'AccessDeniedException', because: noResource('Encrypt') },
  { name: 'the account root needs no identity policy', caller: 'root', keyPolicy: () => [allow(A, 'kms:Encrypt')], act: encrypt(), expect: 'allow' },
  // ---- explicit deny ----
  { name: 'Deny in the key policy beats Allow in the key policy', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:*'), deny(e.me)], act: encrypt(), expect: 'AccessDeniedException', because: DENY_RESOURCE },
  { name: 'Deny in the key policy beats an identity Allow', keyPolicy: (e) => [rootAll, deny('*', 'kms:Encrypt')], identity: () => [idAllow('kms:*')], act: encrypt(), expect: 'AccessDeniedException', because: DENY_RESOURCE },
  { name: 'Deny in the identity policy beats a key policy Allow', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:*')], identity: () => [idDeny('kms:Encrypt')], act: encrypt(), expect: 'AccessDeniedException', because: DENY_IDENTITY },
  { name: 'Deny naming the account applies to its users', keyPolicy: (e) => [allow(e.me, 'kms:*'), deny(A, 'kms:Encrypt'), rootAll], act: encrypt(), expect: 'AccessDeniedException', because: DENY_RESOURCE },
  { name: 'Deny NotPrincipal: everyone but the root is denied', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:*'), { Effect: 'Deny', NotPrincipal: { AWS: ROOT_A }, Action: 'kms:Encrypt', Resource: '*' }], act: encrypt(), expect: 'AccessDeniedException', because: DENY_RESOURCE },
  { name: 'Deny NotPrincipal: the listed user is not denied', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:*'), { Effect: 'Deny', NotPrincipal: { AWS: [ROOT_A, e.me] }, Action: 'kms:Encrypt', Resource: '*' }], act: encrypt(), expect: 'allow' },
  { name: 'a Deny for another action does not apply', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:*'), deny(e.me, 'kms:Decrypt')], act: encrypt(), expect: 'allow' },
  // ---- actions, NotAction, resources ----
  { name: 'kms:Describe* allows DescribeKey', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Describe*')], act: describeKey, expect: 'allow' },
  { name: 'kms:Describe* does not allow Encrypt', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Describe*')], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'kms:GenerateDataKey* allows GenerateDataKeyWithoutPlaintext', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:GenerateDataKey*')], act: (k, e) => k.send(new GenerateDataKeyWithoutPlaintextCommand({ KeyId: e.key, KeySpec: 'AES_256' })), expect: 'allow' },
  { name: 'action names ignore letter case', keyPolicy: (e) => [rootAll, allow(e.me, 'KMS:generatedatakey')], act: (k, e) => k.send(new GenerateDataKeyCommand({ KeyId: e.key, KeySpec: 'AES_256' })), expect: 'allow' },
  { name: 'NotAction kms:Decrypt allows Encrypt', keyPolicy: (e) => [rootAll, { ...allow(e.me), Action: undefined, NotAction: 'kms:Decrypt' }], act: encrypt(), expect: 'allow' },
  { name: 'NotAction kms:Encrypt refuses Encrypt', keyPolicy: (e) => [rootAll, { ...allow(e.me), Action: undefined, NotAction: 'kms:Encrypt' }], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'Resource: the key ARN', keyPolicy: (e) => [rootAll, { ...allow(e.me), Resource: e.key }], act: encrypt(), expect: 'allow' },
  { name: 'Resource: another key ARN', keyPolicy: (e) => [rootAll, { ...allow(e.me), Resource: e.otherKey }], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'NotResource: the key ARN', keyPolicy: (e) => [rootAll, { ...allow(e.me), Resource: undefined, NotResource: e.key }], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'Decrypt allowed by the key policy', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Decrypt')], act: decrypt, expect: 'allow' },
  { name: 'Decrypt not allowed when only Encrypt is', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt')], act: decrypt, expect: 'AccessDeniedException', because: noIdentity('Decrypt') },
  { name: 'ReEncrypt with kms:ReEncrypt*', keyPolicy: (e) => [rootAll, allow(e.me, ['kms:ReEncrypt*'])], act: (k, e) => k.send(new ReEncryptCommand({ CiphertextBlob: e.blob, SourceEncryptionContext: EC, DestinationKeyId: e.key })), expect: 'allow' },
  { name: 'ReEncrypt with ReEncryptFrom only', keyPolicy: (e) => [rootAll, allow(e.me, ['kms:ReEncryptFrom'])], act: (k, e) => k.send(new ReEncryptCommand({ CiphertextBlob: e.blob, SourceEncryptionContext: EC, DestinationKeyId: e.key })), expect: 'AccessDeniedException', because: noIdentity('ReEncryptTo') },
  { name: 'a key policy statement without Resource has no effect', keyPolicy: (e) => [rootAll, { ...allow(e.me), Resource: undefined }], act: encrypt(), expect: 'AccessDeniedException' },
  // ---- operations on no key: identity policies only ----
  { name: 'ListKeys without identity policy', act: (k) => k.send(new ListKeysCommand({})), expect: 'AccessDeniedException', because: noIdentity('ListKeys') },
  { name: 'ListKeys with identity policy on *', identity: () => [idAllow('kms:ListKeys')], act: (k) => k.send(new ListKeysCommand({})), expect: 'allow' },
  { name: 'ListKeys with identity policy on key/* only', identity: () => [idAllow('kms:List*', `arn:aws:kms:${REGION}:${A}:key/*`)], act: (k) => k.send(new ListKeysCommand({})), expect: 'AccessDeniedException' },
  { name: 'CreateKey with identity policy', identity: () => [idAllow('kms:CreateKey')], act: (k) => k.send(new CreateKeyCommand({})), expect: 'allow' },
  { name: 'CreateKey without identity policy', act: (k) => k.send(new CreateKeyCommand({})), expect: 'AccessDeniedException', because: noIdentity('CreateKey') },
  { name: 'GenerateRandom with identity policy', identity: () => [idAllow('kms:GenerateRandom')], act: (k) => k.send(new GenerateRandomCommand({ NumberOfBytes: 8 })), expect: 'allow' },
  { name: 'GenerateRandom denied by identity policy', identity: () => [idAllow('kms:*'), idDeny('kms:GenerateRandom')], act: (k) => k.send(new GenerateRandomCommand({ NumberOfBytes: 8 })), expect: 'AccessDeniedException', because: DENY_IDENTITY },
  { name: 'ListAliases with identity policy', identity: () => [idAllow('kms:ListAliases')], act: (k) => k.send(new ListAliasesCommand({})), expect: 'allow' },
  { name: 'the root may list keys without any policy', caller: 'root', act: (k) => k.send(new ListKeysCommand({})), expect: 'allow' },
  // ---- aliases: permission on the alias and on the key(s) ----
  { name: 'CreateAlias with permission on alias and key', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:CreateAlias')], identity: () => [idAllow('kms:CreateAlias', `arn:aws:kms:${REGION}:${A}:alias/*`)], act: (k, e) => k.send(new CreateAliasCommand({ AliasName: `${e.alias}-new`, TargetKeyId: e.keyId })), expect: 'allow' },
  { name: 'CreateAlias without permission on the alias', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:CreateAlias')], act: (k, e) => k.send(new CreateAliasCommand({ AliasName: `${e.alias}-new`, TargetKeyId: e.keyId })), expect: 'AccessDeniedException', because: noIdentity('CreateAlias') },
  { name: 'CreateAlias without permission on the key', identity: () => [idAllow('kms:CreateAlias', `arn:aws:kms:${REGION}:${A}:alias/*`)], keyPolicy: () => [rootAll], act: (k, e) => k.send(new CreateAliasCommand({ AliasName: `${e.alias}-new`, TargetKeyId: e.keyId })), expect: 'AccessDeniedException', because: noIdentity('CreateAlias') },
  { name: 'CreateAlias on an alias name the identity policy excludes', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:CreateAlias')], identity: () => [idAllow('kms:CreateAlias', `arn:aws:kms:${REGION}:${A}:alias/app-*`)], act: (k, e) => k.send(new CreateAliasCommand({ AliasName: `${e.alias}-new`, TargetKeyId: e.keyId })), expect: 'AccessDeniedException' },
  { name: 'DeleteAlias with permission on alias and key', alias: true, keyPolicy: (e) => [rootAll, allow(e.me, 'kms:DeleteAlias')], identity: (e) => [idAllow('kms:DeleteAlias', `arn:aws:kms:${REGION}:${A}:${e.alias}`)], act: (k, e) => k.send(new DeleteAliasCommand({ AliasName: e.alias })), expect: 'allow' },
  { name: 'UpdateAlias without permission on the new key', alias: true, keyPolicy: (e) => [rootAll, allow(e.me, 'kms:UpdateAlias')], identity: () => [idAllow('kms:UpdateAlias', `arn:aws:kms:${REGION}:${A}:alias/*`)], act: (k, e) => k.send(new UpdateAliasCommand({ AliasName: e.alias, TargetKeyId: e.otherKey })), expect: 'AccessDeniedException' },
  { name: 'UpdateAlias with permission on alias, old key and new key', alias: true, keyPolicy: (e) => [rootAll, allow(e.me, 'kms:UpdateAlias')], identity: (e) => [idAllow('kms:UpdateAlias', [`arn:aws:kms:${REGION}:${A}:alias/*`, e.otherKey])], act: (k, e) => k.send(new UpdateAliasCommand({ AliasName: e.alias, TargetKeyId: e.otherKey })), expect: 'allow' },
  // ---- condition operators (on Encrypt, through the key policy) ----
  onEncrypt('StringEquals kms:EncryptionContext:tenant, matching', 'StringEquals', 'kms:EncryptionContext:tenant', 'a', { tenant: 'a' }, true),
  onEncrypt('StringEquals kms:EncryptionContext:tenant, other value', 'StringEquals', 'kms:EncryptionContext:tenant', 'a', { tenant: 'b' }, false),
  onEncrypt('StringEquals kms:EncryptionContext:tenant, no context', 'StringEquals', 'kms:EncryptionContext:tenant', 'a', undefined, false),
  onEncrypt('the encryption context key in the condition key ignores letter case', 'StringEquals', 'kms:EncryptionContext:TENANT', 'a', { tenant: 'a' }, true),
  onEncrypt('several values are OR-ed', 'StringEquals', 'kms:EncryptionContext:tenant', ['b', 'a'], { tenant: 'a' }, true),
  onEncrypt('StringNotEquals, other value', 'StringNotEquals', 'kms:EncryptionContext:tenant', 'b', { tenant: 'a' }, true),
  onEncrypt('StringNotEquals, same value', 'StringNotEquals', 'kms:EncryptionContext:tenant', 'a', { tenant: 'a' }, false),
  onEncrypt('StringEqualsIgnoreCase', 'StringEqualsIgnoreCase', 'kms:EncryptionContext:tenant', 'A', { tenant: 'a' }, true),
  onEncrypt('StringEquals is case-sensitive', 'StringEquals', 'kms:EncryptionContext:tenant', 'A', { tenant: 'a' }, false),
  onEncrypt('StringNotEqualsIgnoreCase', 'StringNotEqualsIgnoreCase', 'kms:EncryptionContext:tenant', 'A', { tenant: 'a' }, false),
  onEncrypt('StringLike, matching', 'StringLike', 'kms:EncryptionContext:tenant', 'a*', { tenant: 'abc' }, true),
  onEncrypt('StringLike, not matching', 'StringLike', 'kms:EncryptionContext:tenant', 'a?', { tenant: 'abc' }, false),
  onEncrypt('StringNotLike', 'StringNotLike', 'kms:EncryptionContext:tenant', 'x*', { tenant: 'abc' }, true),
  onEncrypt('ForAnyValue:StringEquals kms:EncryptionContextKeys', 'ForAnyValue:StringEquals', 'kms:EncryptionContextKeys', 'tenant', { tenant: 'a', app: 'x' }, true),
  onEncrypt('ForAnyValue with no context', 'ForAnyValue:StringEquals', 'kms:EncryptionContextKeys', 'tenant', undefined, false),
  onEncrypt('ForAllValues:StringEquals kms:EncryptionContextKeys, all listed', 'ForAllValues:StringEquals', 'kms:EncryptionContextKeys', ['tenant', 'app'], { tenant: 'a' }, true),
  onEncrypt('ForAllValues:StringEquals kms:EncryptionContextKeys, one not listed', 'ForAllValues:StringEquals', 'kms:EncryptionContextKeys', ['tenant'], { tenant: 'a', other: 'x' }, false),
  onEncrypt('ForAllValues with no context is true (the documented pitfall)', 'ForAllValues:StringEquals', 'kms:EncryptionContextKeys', ['tenant'], undefined, true),
  onEncrypt('...IfExists with the key absent', 'StringEqualsIfExists', 'kms:EncryptionContext:tenant', 'a', undefined, true),
  onEncrypt('...IfExists with the key present and different', 'StringEqualsIfExists', 'kms:EncryptionContext:tenant', 'a', { tenant: 'b' }, false),
  onEncrypt('Null false: the key must be present', 'Null', 'kms:EncryptionContext:tenant', 'false', undefined, false),
  onEncrypt('Null true: the key must be absent', 'Null', 'kms:EncryptionContext:tenant', 'true', undefined, true),
  onEncrypt('Bool aws:SecureTransport false (plain HTTP)', 'Bool', 'aws:SecureTransport', 'false', undefined, true),
  onEncrypt('Bool aws:SecureTransport true (plain HTTP)', 'Bool', 'aws:SecureTransport', true, undefined, false),
  onEncrypt('NumericGreaterThan aws:EpochTime', 'NumericGreaterThan', 'aws:EpochTime', 1_600_000_000, undefined, true),
  onEncrypt('NumericLessThan aws:EpochTime', 'NumericLessThan', 'aws:EpochTime', 1_600_000_000, undefined, false),
  onEncrypt('NumericEquals aws:EpochTime', 'NumericEquals', 'aws:EpochTime', 0, undefined, false),
  onEncrypt('NumericNotEquals aws:EpochTime', 'NumericNotEquals', 'aws:EpochTime', 0, undefined, true),
  onEncrypt('NumericLessThanEquals aws:EpochTime', 'NumericLessThanEquals', 'aws:EpochTime', 99_999_999_999, undefined, true),
  onEncrypt('NumericGreaterThanEquals aws:EpochTime', 'NumericGreaterThanEquals', 'aws:EpochTime', 99_999_999_999, undefined, false),
  onEncrypt('DateGreaterThan aws:CurrentTime', 'DateGreaterThan', 'aws:CurrentTime', '2020-01-01T00:00:00Z', undefined, true),
  onEncrypt('DateLessThan aws:CurrentTime', 'DateLessThan', 'aws:CurrentTime', '2020-01-01T00:00:00Z', undefined, false),
  onEncrypt('DateEquals aws:CurrentTime', 'DateEquals', 'aws:CurrentTime', '2020-01-01T00:00:00Z', undefined, false),
  onEncrypt('DateNotEquals aws:CurrentTime', 'DateNotEquals', 'aws:CurrentTime', '2020-01-01T00:00:00Z', undefined, true),
  onEncrypt('DateLessThanEquals aws:CurrentTime', 'DateLessThanEquals', 'aws:CurrentTime', '2999-01-01T00:00:00Z', undefined, true),
  onEncrypt('DateGreaterThanEquals aws:CurrentTime', 'DateGreaterThanEquals', 'aws:CurrentTime', '2999-01-01T00:00:00Z', undefined, false),
  onEncrypt('IpAddress aws:SourceIp, loopback', 'IpAddress', 'aws:SourceIp', '127.0.0.0/8', undefined, true),
  onEncrypt('IpAddress aws:SourceIp, other network', 'IpAddress', 'aws:SourceIp', '10.0.0.0/8', undefined, false),
  onEncrypt('NotIpAddress aws:SourceIp', 'NotIpAddress', 'aws:SourceIp', ['10.0.0.0/8', '192.168.0.0/16'], undefined, true),
  { name: 'ArnEquals aws:PrincipalArn', keyPolicy: (e) => [rootAll, allow('*', 'kms:Encrypt', cond('ArnEquals', 'aws:PrincipalArn', e.me))], act: encrypt(), expect: 'allow' },
  { name: 'ArnLike aws:PrincipalArn, users only; a role calls', caller: 'role', keyPolicy: () => [rootAll, allow('*', 'kms:Encrypt', cond('ArnLike', 'aws:PrincipalArn', 'arn:aws:iam::*:user/*'))], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'ArnNotEquals aws:PrincipalArn in a Deny', keyPolicy: (e) => [rootAll, allow('*', 'kms:Encrypt'), deny('*', 'kms:Encrypt', cond('ArnNotEquals', 'aws:PrincipalArn', [e.me, ROOT_A]))], act: encrypt(), expect: 'allow' },
  { name: 'ArnNotLike aws:PrincipalArn in a Deny', keyPolicy: () => [rootAll, allow('*', 'kms:Encrypt'), deny('*', 'kms:Encrypt', cond('ArnNotLike', 'aws:PrincipalArn', 'arn:aws:iam::*:role/*'))], act: encrypt(), expect: 'AccessDeniedException', because: DENY_RESOURCE },
  { name: 'several condition keys are AND-ed: one missing', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', { Condition: { StringEquals: { 'kms:EncryptionContext:tenant': 'a', 'kms:EncryptionContext:app': 'x' } } })], act: encrypt({ tenant: 'a' }), expect: 'AccessDeniedException' },
  { name: 'several condition keys are AND-ed: both present', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', { Condition: { StringEquals: { 'kms:EncryptionContext:tenant': 'a', 'kms:EncryptionContext:app': 'x' } } })], act: encrypt({ tenant: 'a', app: 'x' }), expect: 'allow' },
  // ---- condition keys ----
  onEncrypt('kms:CallerAccount, own account', 'StringEquals', 'kms:CallerAccount', A, undefined, true),
  onEncrypt('kms:CallerAccount, other account', 'StringEquals', 'kms:CallerAccount', B, undefined, false),
  onEncrypt('kms:EncryptionAlgorithm defaults to SYMMETRIC_DEFAULT', 'StringEquals', 'kms:EncryptionAlgorithm', 'SYMMETRIC_DEFAULT', undefined, true),
  onEncrypt('kms:EncryptionAlgorithm, another algorithm required', 'StringEquals', 'kms:EncryptionAlgorithm', 'RSAES_OAEP_SHA_256', undefined, false),
  onEncrypt('kms:KeySpec', 'StringEquals', 'kms:KeySpec', 'SYMMETRIC_DEFAULT', undefined, true),
  onEncrypt('kms:KeyUsage', 'StringEquals', 'kms:KeyUsage', 'SIGN_VERIFY', undefined, false),
  onEncrypt('kms:KeyOrigin', 'StringEquals', 'kms:KeyOrigin', 'AWS_KMS', undefined, true),
  onEncrypt('aws:PrincipalAccount', 'StringEquals', 'aws:PrincipalAccount', A, undefined, true),
  onEncrypt('aws:PrincipalArn, StringLike on users', 'StringLike', 'aws:PrincipalArn', `arn:aws:iam::${A}:user/*`, undefined, true),
  { name: 'kms:RequestAlias: called through the alias', alias: true, keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', cond('StringEquals', 'kms:RequestAlias', e.alias))], act: encrypt(undefined, (e) => e.alias), expect: 'allow' },
  { name: 'kms:RequestAlias: called by key ARN', alias: true, keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', cond('StringEquals', 'kms:RequestAlias', e.alias))], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'kms:ResourceAliases: the key has the alias', alias: true, keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', cond('ForAnyValue:StringEquals', 'kms:ResourceAliases', e.alias))], act: encrypt(), expect: 'allow' },
  { name: 'kms:ResourceAliases: the key has no alias', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', cond('ForAnyValue:StringEquals', 'kms:ResourceAliases', e.alias))], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'aws:ResourceTag/team matches the key tag', tags: [{ TagKey: 'team', TagValue: 'blue' }], keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', cond('StringEquals', 'aws:ResourceTag/team', 'blue'))], act: encrypt(), expect: 'allow' },
  { name: 'aws:ResourceTag/team, other tag value', tags: [{ TagKey: 'team', TagValue: 'red' }], keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt', cond('StringEquals', 'aws:ResourceTag/team', 'blue'))], act: encrypt(), expect: 'AccessDeniedException' },
  { name: 'aws:RequestTag/team on CreateKey, tag given', identity: () => [idAllow('kms:CreateKey', '*', cond('StringEquals', 'aws:RequestTag/team', 'blue'))], act: (k) => k.send(new CreateKeyCommand({ Tags: [{ TagKey: 'team', TagValue: 'blue' }] })), expect: 'allow' },
  { name: 'aws:RequestTag/team on CreateKey, tag missing', identity: () => [idAllow('kms:CreateKey', '*', cond('StringEquals', 'aws:RequestTag/team', 'blue'))], act: (k) => k.send(new CreateKeyCommand({})), expect: 'AccessDeniedException', because: noIdentity('CreateKey') },
  { name: 'aws:TagKeys on TagResource, allowed keys only', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:TagResource', cond('ForAllValues:StringEquals', 'aws:TagKeys', ['team', 'owner']))], act: (k, e) => k.send(new TagResourceCommand({ KeyId: e.keyId, Tags: [{ TagKey: 'team', TagValue: 'x' }] })), expect: 'allow' },
  { name: 'aws:TagKeys on TagResource, another key', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:TagResource', cond('ForAllValues:StringEquals', 'aws:TagKeys', ['team', 'owner']))], act: (k, e) => k.send(new TagResourceCommand({ KeyId: e.keyId, Tags: [{ TagKey: 'cost', TagValue: 'x' }] })), expect: 'AccessDeniedException' },
  { name: 'kms:GrantIsForAWSResource is false here', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:ListGrants', cond('Bool', 'kms:GrantIsForAWSResource', true))], act: (k, e) => k.send(new ListGrantsCommand({ KeyId: e.key })), expect: 'AccessDeniedException' },
  { name: 'kms:BypassPolicyLockoutSafetyCheck denied in an identity policy', keyPolicy: (e) => [rootAll, allow(e.me, ['kms:PutKeyPolicy', 'kms:GetKeyPolicy'])], identity: () => [idDeny('kms:PutKeyPolicy', '*', cond('Bool', 'kms:BypassPolicyLockoutSafetyCheck', true))], act: (k, e) => k.send(new PutKeyPolicyCommand({ KeyId: e.key, Policy: policyDoc([rootAll]), BypassPolicyLockoutSafetyCheck: true })), expect: 'AccessDeniedException', because: DENY_IDENTITY },
  { name: 'CreateGrant with kms:EncryptionContext from the grant constraints', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:CreateGrant', cond('StringEquals', 'kms:EncryptionContext:tenant', 'a'))], act: (k, e) => k.send(new CreateGrantCommand({ KeyId: e.key, GranteePrincipal: e.me, Operations: ['Encrypt'], Constraints: { EncryptionContextSubset: { tenant: 'a' } } })), expect: 'allow' },
  { name: 'CreateGrant, kms:GrantOperations limits the operations', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:CreateGrant', cond('ForAllValues:StringEquals', 'kms:GrantOperations', ['Decrypt', 'DescribeKey']))], act: (k, e) => k.send(new CreateGrantCommand({ KeyId: e.key, GranteePrincipal: e.me, Operations: ['Decrypt', 'Encrypt'] })), expect: 'AccessDeniedException' },
  { name: 'CreateGrant, kms:GranteePrincipal', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:CreateGrant', cond('StringEquals', 'kms:GranteePrincipal', `arn:aws:iam::${A}:role/app`))], act: (k, e) => k.send(new CreateGrantCommand({ KeyId: e.key, GranteePrincipal: `arn:aws:iam::${A}:role/app`, Operations: ['Decrypt'] })), expect: 'allow' },
  { name: 'CreateGrant, kms:RetiringPrincipal required', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:CreateGrant', cond('Null', 'kms:RetiringPrincipal', false))], act: (k, e) => k.send(new CreateGrantCommand({ KeyId: e.key, GranteePrincipal: e.me, Operations: ['Decrypt'] })), expect: 'AccessDeniedException' },
  { name: 'CreateGrant, kms:GrantConstraintType', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:CreateGrant', cond('StringEquals', 'kms:GrantConstraintType', 'EncryptionContextEquals'))], act: (k, e) => k.send(new CreateGrantCommand({ KeyId: e.key, GranteePrincipal: e.me, Operations: ['Decrypt'], Constraints: { EncryptionContextEquals: { tenant: 'a' } } })), expect: 'allow' },
  // ---- another account ----
  { name: 'other account root, key policy allows that account', caller: 'otherRoot', keyPolicy: () => [rootAll, allow(ROOT_B, ['kms:Encrypt', 'kms:DescribeKey'])], act: encrypt(), expect: 'allow' },
  { name: 'other account user with identity policy', caller: 'otherUser', keyPolicy: () => [rootAll, allow(B, 'kms:Encrypt')], identity: (e) => [idAllow('kms:Encrypt', e.key)], act: encrypt(), expect: 'allow' },
  { name: 'other account user without identity policy', caller: 'otherUser', keyPolicy: () => [rootAll, allow(B, 'kms:Encrypt')], act: encrypt(), expect: 'AccessDeniedException', because: noIdentity('Encrypt') },
  { name: 'other account user named in the key policy still needs an identity policy', caller: 'otherUser', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:Encrypt')], act: encrypt(), expect: 'AccessDeniedException', because: noIdentity('Encrypt') },
  { name: 'other account, key policy silent', caller: 'otherRoot', act: encrypt(), expect: 'AccessDeniedException', because: noResource('Encrypt') },
  { name: 'other account uses the key id instead of the ARN', caller: 'otherRoot', keyPolicy: () => [rootAll, allow(ROOT_B, 'kms:*')], act: (k, e) => k.send(new EncryptCommand({ KeyId: e.keyId, Plaintext: P })), expect: 'NotFoundException' },
  { name: 'other account may not manage the key, whatever the policy says', caller: 'otherRoot', keyPolicy: () => [rootAll, allow(ROOT_B, 'kms:*')], act: (k, e) => k.send(new EnableKeyCommand({ KeyId: e.key })), expect: 'AccessDeniedException' },
  { name: 'other account may not list the aliases of the key', caller: 'otherRoot', alias: true, keyPolicy: () => [rootAll, allow(ROOT_B, 'kms:*')], act: (k, e) => k.send(new ListAliasesCommand({ KeyId: e.key })), expect: 'AccessDeniedException' },
  { name: 'other account may describe the key', caller: 'otherRoot', keyPolicy: () => [rootAll, allow(ROOT_B, 'kms:DescribeKey')], act: describeKey, expect: 'allow' },
  { name: 'other account, kms:CallerAccount condition', caller: 'otherRoot', keyPolicy: () => [rootAll, allow('*', 'kms:Encrypt', cond('StringEquals', 'kms:CallerAccount', B))], act: encrypt(), expect: 'allow' },
  // ---- key policy operations ----
  { name: 'GetKeyPolicy allowed', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:GetKeyPolicy')], act: (k, e) => k.send(new GetKeyPolicyCommand({ KeyId: e.key })), expect: 'allow' },
  { name: 'ListKeyPolicies not allowed', keyPolicy: (e) => [rootAll, allow(e.me, 'kms:GetKeyPolicy')], act: (k, e) => k.send(new ListKeyPoliciesCommand({ KeyId: e.key })), expect: 'AccessDeniedException', because: noIdentity('ListKeyPolicies') },
];

let seq = 0;
async function runCase(c: Case) {
  const n = seq++;
  const alias = `alias/authz-${process.pid}-${n}`;
  const created = (await h.kms.send(new CreateKeyCommand({ Description: c.name, Tags: c.tags }))).KeyMetadata!;
  if (c.alias) await h.kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: created.KeyId }));
  const blob = (await h.kms.send(new EncryptCommand({ KeyId: created.KeyId, Plaintext: P, EncryptionContext: EC }))).CiphertextBlob!;
  const caller = c.caller ?? 'user';
  const account = caller.startsWith('other') ? B : A;
  const me = caller === 'root' ? ROOT_A : caller === 'otherRoot' ? ROOT_B
    : `arn:aws:iam::${account}:${caller === 'role' ? 'role' : 'user'}/case${n}`;
  const env: Env = { me, key: created.Arn!, keyId: created.KeyId!, alias, otherKey, blob };
  if (c.keyPolicy) {
    await h.kms.send(new PutKeyPolicyCommand({ KeyId: created.KeyId, Policy: policyDoc(c.keyPolicy(env)), BypassPolicyLockoutSafetyCheck: true }));
  }
  let kms: KMSClient;
  if (caller === 'root') kms = h.kms;
  else if (caller === 'otherRoot') kms = otherRoot.kms;
  else {
    const p = await createPrincipal(h, { type: caller === 'role' ? 'role' : 'user', name: `case${n}`, account, identity: c.identity?.(env) });
    expect(p.arn).toBe(me);
    kms = p.kms;
  }
  return { env, run: () => c.act(kms, env) };
}

// Each case has its own key and caller, so the cases run concurrently.
describe('authorization table: allow and deny through the daemon', () => {
  it.concurrent.for(cases)('$name', async (c, { expect }) => {
    const { env, run } = await runCase(c);
    if (c.expect === 'allow') {
      await run();
      return;
    }
    const e = await failure(run());
    expect(e.name, `${e.name}: ${e.message}`).toBe(c.expect);
    expect(e.$metadata?.httpStatusCode).toBe(400);
    if (c.expect === 'AccessDeniedException') {
      expect(e.message).toMatch(new RegExp(`^User: ${env.me.replace(/[/]/g, '\\/')} is not authorized to perform: kms:\\w+ on resource: \\S+ `));
      if (c.because) expect(e.message.endsWith(typeof c.because === 'string' ? c.because : c.because(env))).toBe(true);
    }
  });

  it('covers at least 80 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(80);
  });
});

/**
 * Condition keys of operations that other branches implement (Sign, Verify, GenerateMac,
 * GenerateDataKeyPair, EnableKeyRotation, ScheduleKeyDeletion, GetParametersForImport,
 * ImportKeyMaterial): the daemon's own engine is driven with the request those operations
 * decode, exactly as their `authorize(ctx, 'Sign', key)` calls will.
 */
describe('engine-level cases for operations added by other branches', () => {
  const engineCases: [string, string, Record<string, unknown>, string, string, unknown, boolean][] = [
    ['kms:SigningAlgorithm', 'Sign', { SigningAlgorithm: 'ECDSA_SHA_256' }, 'StringEquals', 'kms:SigningAlgorithm', 'ECDSA_SHA_256', true],
    ['kms:SigningAlgorithm, another', 'Verify', { SigningAlgorithm: 'RSASSA_PSS_SHA_256' }, 'StringEquals', 'kms:SigningAlgorithm', 'ECDSA_SHA_256', false],
    ['kms:MacAlgorithm', 'GenerateMac', { MacAlgorithm: 'HMAC_SHA_256' }, 'StringEquals', 'kms:MacAlgorithm', 'HMAC_SHA_256', true],
    ['kms:MacAlgorithm, another', 'VerifyMac', { MacAlgorithm: 'HMAC_SHA_512' }, 'StringEquals', 'kms:MacAlgorithm', 'HMAC_SHA_256', false],
    ['kms:DataKeyPairSpec', 'GenerateDataKeyPair', { KeyPairSpec: 'RSA_2048' }, 'StringLike', 'kms:DataKeyPairSpec', 'RSA*', true],
    ['kms:DataKeyPairSpec, another', 'GenerateDataKeyPair', { KeyPairSpec: 'ECC_NIST_P256' }, 'StringLike', 'kms:DataKeyPairSpec', 'RSA*', false],
    ['kms:RotationPeriodInDays', 'EnableKeyRotation', { RotationPeriodInDays: 90 }, 'NumericLessThanEquals', 'kms:RotationPeriodInDays', 180, true],
    ['kms:RotationPeriodInDays, default 365', 'EnableKeyRotation', {}, 'NumericLessThanEquals', 'kms:RotationPeriodInDays', 180, false],
    ['kms:ScheduleKeyDeletionPendingWindowInDays', 'ScheduleKeyDeletion', { PendingWindowInDays: 30 }, 'NumericGreaterThanEquals', 'kms:ScheduleKeyDeletionPendingWindowInDays', 21, true],
    ['kms:ScheduleKeyDeletionPendingWindowInDays, too short', 'ScheduleKeyDeletion', { PendingWindowInDays: 7 }, 'NumericGreaterThanEquals', 'kms:ScheduleKeyDeletionPendingWindowInDays', 21, false],
    ['kms:WrappingAlgorithm', 'GetParametersForImport', { WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_4096' }, 'StringEquals', 'kms:WrappingAlgorithm', 'RSAES_OAEP_SHA_256', true],
    ['kms:WrappingKeySpec', 'GetParametersForImport', { WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' }, 'StringEquals', 'kms:WrappingKeySpec', 'RSA_4096', false],
    ['kms:ExpirationModel', 'ImportKeyMaterial', { ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }, 'StringEquals', 'kms:ExpirationModel', 'KEY_MATERIAL_DOES_NOT_EXPIRE', true],
    ['kms:ValidTo', 'ImportKeyMaterial', { ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo: new Date('2030-01-01T00:00:00Z') }, 'NumericLessThanEquals', 'kms:ValidTo', 1_900_000_000, true],
    ['kms:ValidTo, too late', 'ImportKeyMaterial', { ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo: new Date('2040-01-01T00:00:00Z') }, 'NumericLessThanEquals', 'kms:ValidTo', 1_900_000_000, false],
    ['kms:ValidTo as a date', 'ImportKeyMaterial', { ValidTo: new Date('2030-01-01T00:00:00Z') }, 'DateLessThan', 'kms:ValidTo', '2031-01-01T00:00:00Z', true],
  ];
  it.concurrent.for(engineCases)('%s (%s)', async ([, action, input, op, key, value, ok], { expect }) => {
    const created = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const user = await createPrincipal(h, { type: 'user', name: `engine${seq++}` });
    await h.kms.send(new PutKeyPolicyCommand({ KeyId: created.KeyId, Policy: policyDoc([rootAll, allow(user.arn, `kms:${action}`, cond(op, key, value))]) }));
    const record = h.daemon.deps.store.getKey(created.KeyId!)!;
    const ctx: RequestContext = {
      principal: h.daemon.deps.authz!.credentials.lookup(user.accessKeyId)!.principal,
      requestId: 'engine-case',
      input: { KeyId: created.KeyId, ...input },
      authz: h.daemon.deps.authz,
    };
    if (ok) expect(() => authorize(ctx, action, record)).not.toThrow();
    else expect(() => authorize(ctx, action, record)).toThrow(`User: ${user.arn} is not authorized to perform: kms:${action}`);
  });

  it('an action name the engine has never heard of is judged by policy (kms:*, kms:Future*), and kms:-qualified names work', async () => {
    const created = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const user = await createPrincipal(h, { type: 'user', name: `future${seq++}` });
    const record = () => h.daemon.deps.store.getKey(created.KeyId!)!;
    const ctx: RequestContext = {
      principal: h.daemon.deps.authz!.credentials.lookup(user.accessKeyId)!.principal, requestId: 'future', input: {}, authz: h.daemon.deps.authz,
    };
    expect(() => authorize(ctx, 'FutureOperation', record())).toThrow(
      `User: ${user.arn} is not authorized to perform: kms:FutureOperation on resource: ${created.Arn} because no identity-based policy allows the kms:FutureOperation action`,
    );
    await h.kms.send(new PutKeyPolicyCommand({ KeyId: created.KeyId, Policy: policyDoc([rootAll, allow(user.arn, 'kms:Future*')]) }));
    expect(() => authorize(ctx, 'FutureOperation', record())).not.toThrow();
    expect(() => authorize(ctx, 'kms:FutureOperation', record())).not.toThrow();
    expect(() => authorize(ctx, 'PastOperation', record())).toThrow(/kms:PastOperation/);
    await h.kms.send(new PutKeyPolicyCommand({ KeyId: created.KeyId, Policy: policyDoc([rootAll, allow(user.arn, 'kms:*'), deny(user.arn, 'kms:FutureOperation')]) }));
    expect(() => authorize(ctx, 'PastOperation', record())).not.toThrow();
    expect(() => authorize(ctx, 'FutureOperation', record())).toThrow(/with an explicit deny in a resource-based policy$/);
  });
});
