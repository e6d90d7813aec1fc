/**
 * Key policy operations (PutKeyPolicy, GetKeyPolicy, ListKeyPolicies, CreateKey's Policy),
 * validation, the lockout safety check, and the "done when" scenario: an application
 * role that may do exactly Encrypt with tenant=a, by policy or by grant, and nothing else.
 */
import {
  CreateAliasCommand, CreateGrantCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand, DisableKeyCommand,
  EncryptCommand, GenerateDataKeyCommand, GetKeyPolicyCommand, ListGrantsCommand, ListKeyPoliciesCommand, ListKeysCommand,
  PutKeyPolicyCommand, ReEncryptCommand, RetireGrantCommand, TagResourceCommand, type KeyMetadata,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCKOUT_MESSAGE } from '../../src/kms/policies.js';
import { ACCOUNT as A, failure, startHarness, type Harness } from '../helpers/daemon.js';
import { createPrincipal, policyDoc, setIdentityPolicy, type TestPrincipal } from '../helpers/principals.js';

let h: Harness;
let seq = 0;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const ROOT = `arn:aws:iam::${A}:root`;
const rootAll = { Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: { AWS: ROOT }, Action: 'kms:*', Resource: '*' };
const newKey = async (Policy?: string, Bypass?: boolean): Promise<KeyMetadata> =>
  (await h.kms.send(new CreateKeyCommand({ Policy, BypassPolicyLockoutSafetyCheck: Bypass }))).KeyMetadata!;
async function rejects(p: Promise<unknown>, name: string) {
  const e = await failure(p);
  expect(e.name, `${e.name}: ${e.message}`).toBe(name);
  expect(e.$metadata?.httpStatusCode).toBe(400);
  return e;
}

describe('GetKeyPolicy, ListKeyPolicies, PutKeyPolicy', () => {
  it('a new key has the AWS default key policy; the only policy name is default', async () => {
    const key = await newKey();
    const got = await h.kms.send(new GetKeyPolicyCommand({ KeyId: key.KeyId }));
    expect(got.PolicyName).toBe('default');
    expect(JSON.parse(got.Policy!)).toEqual({ Version: '2012-10-17', Id: 'key-default-1', Statement: [rootAll] });
    expect((await h.kms.send(new ListKeyPoliciesCommand({ KeyId: key.Arn }))).PolicyNames).toEqual(['default']);
    await rejects(h.kms.send(new GetKeyPolicyCommand({ KeyId: key.KeyId, PolicyName: 'other' })), 'NotFoundException');
    await rejects(h.kms.send(new ListKeyPoliciesCommand({ KeyId: key.KeyId, Marker: 'x' })), 'InvalidMarkerException');
    await rejects(h.kms.send(new GetKeyPolicyCommand({ KeyId: 'alias/nope' })), 'NotFoundException');
  });

  it('CreateKey keeps the given policy text exactly, and PutKeyPolicy replaces it', async () => {
    const text = `{\n  "Version": "2012-10-17",\n  "Statement": [ ${JSON.stringify(rootAll)} ]\n}`;
    const key = await newKey(text);
    expect((await h.kms.send(new GetKeyPolicyCommand({ KeyId: key.KeyId }))).Policy).toBe(text);
    const next = policyDoc([rootAll, { Effect: 'Deny', Principal: '*', Action: 'kms:Decrypt', Resource: '*' }]);
    await h.kms.send(new PutKeyPolicyCommand({ KeyId: key.KeyId, Policy: next, PolicyName: 'default' }));
    expect((await h.kms.send(new GetKeyPolicyCommand({ KeyId: key.KeyId }))).Policy).toBe(next);
    await rejects(h.kms.send(new PutKeyPolicyCommand({ KeyId: key.KeyId, Policy: next, PolicyName: 'other' })), 'ValidationException');
  });

  it('a policy change takes effect on the next request', async () => {
    const key = await newKey();
    const ct = (await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('x') }))).CiphertextBlob!;
    await h.kms.send(new PutKeyPolicyCommand({ KeyId: key.KeyId, Policy: policyDoc([rootAll, { Effect: 'Deny', Principal: '*', Action: 'kms:Decrypt', Resource: '*' }]) }));
    await rejects(h.kms.send(new DecryptCommand({ CiphertextBlob: ct })), 'AccessDeniedException');
    await h.kms.send(new PutKeyPolicyCommand({ KeyId: key.KeyId, Policy: policyDoc([rootAll]) }));
    await h.kms.send(new DecryptCommand({ CiphertextBlob: ct }));
  });

  it('an identity policy change takes effect on the next request', async () => {
    const key = await newKey();
    const u = await createPrincipal(h, { type: 'user', name: `idchange${seq++}` });
    await rejects(u.kms.send(new DescribeKeyCommand({ KeyId: key.Arn })), 'AccessDeniedException');
    await setIdentityPolicy(h, u.arn, [{ Effect: 'Allow', Action: 'kms:DescribeKey', Resource: key.Arn }]);
    await u.kms.send(new DescribeKeyCommand({ KeyId: key.Arn }));
    await setIdentityPolicy(h, u.arn, undefined);
    await rejects(u.kms.send(new DescribeKeyCommand({ KeyId: key.Arn })), 'AccessDeniedException');
  });

  it('refuses malformed policies with MalformedPolicyDocumentException and a reason', async () => {
    const key = await newKey();
    const put = (Policy: string) => h.kms.send(new PutKeyPolicyCommand({ KeyId: key.KeyId, Policy }));
    const cases: [string, RegExp][] = [
      ['{"Version":"2012-10-17","Statement":', /not valid JSON/],
      [JSON.stringify({ Version: '2012-10-17', Statement: [] }), /at least one Statement/],
      [JSON.stringify({ Version: '1999-01-01', Statement: [rootAll] }), /Version/],
      [policyDoc([{ ...rootAll, Effect: 'Permit' }]), /Effect/],
      [policyDoc([{ ...rootAll, Principal: { AWS: 'arn:aws:iam::12:user/x' } }]), /invalid principals/],
      [policyDoc([{ Effect: 'Allow', Action: 'kms:*', Resource: '*' }]), /no principal/],
      [policyDoc([{ ...rootAll, Action: 'Encrypt' }]), /service:action/],
      [policyDoc([{ ...rootAll, Resource: 'key/1' }]), /Resource/],
      [policyDoc([{ ...rootAll, Condition: { StringEqualsAlways: { 'kms:CallerAccount': A } } }]), /Unknown condition operator/],
      [policyDoc([{ ...rootAll, Condition: { 'ForAllValues:StringEquals': { 'kms:EncryptionContext:app': 'x' } } }]), /OverlyPermissiveCondition/],
      [policyDoc([{ ...rootAll, Sid: 'x'.repeat(33_000) }]), /32768 bytes/],
    ];
    for (const [policy, reason] of cases) {
      const e = await rejects(put(policy), 'MalformedPolicyDocumentException');
      expect(e.message).toMatch(reason);
    }
    await rejects(h.kms.send(new CreateKeyCommand({ Policy: policyDoc([{ ...rootAll, Effect: 'Permit' }]) })), 'MalformedPolicyDocumentException');
    // Nothing changed.
    expect(JSON.parse((await h.kms.send(new GetKeyPolicyCommand({ KeyId: key.KeyId }))).Policy!).Id).toBe('key-default-1');
  });
});

describe('the lockout safety check', () => {
  const onlyAlice = policyDoc([{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${A}:user/alice` }, Action: 'kms:*', Resource: '*' }]);

  it('refuses a CreateKey policy that would not let the caller change it, unless bypassed', async () => {
    const e = await rejects(h.kms.send(new CreateKeyCommand({ Policy: onlyAlice })), 'MalformedPolicyDocumentException');
    expect(e.message).toBe(LOCKOUT_MESSAGE);
    const key = await newKey(onlyAlice, true);
    // The root locked itself out, as it asked to.
    await rejects(h.kms.send(new PutKeyPolicyCommand({ KeyId: key.KeyId, Policy: policyDoc([rootAll]) })), 'AccessDeniedException');
    await rejects(h.kms.send(new DescribeKeyCommand({ KeyId: key.KeyId })), 'AccessDeniedException');
  });

  it('refuses a PutKeyPolicy that removes the caller, and keeps the old policy', async () => {
    const key = await newKey();
    const e = await rejects(h.kms.send(new PutKeyPolicyCommand({ KeyId: key.KeyId, Policy: onlyAlice })), 'MalformedPolicyDocumentException');
    expect(e.message).toBe(LOCKOUT_MESSAGE);
    const allowsAllButPut = policyDoc([{ ...rootAll, Action: 'kms:*' }, { Effect: 'Deny', Principal: { AWS: ROOT }, Action: 'kms:PutKeyPolicy', Resource: '*' }]);
    await rejects(h.kms.send(new PutKeyPolicyCommand({ KeyId: key.KeyId, Policy: allowsAllButPut })), 'MalformedPolicyDocumentException');
    expect(JSON.parse((await h.kms.send(new GetKeyPolicyCommand({ KeyId: key.KeyId }))).Policy!).Id).toBe('key-default-1');
  });

  it('counts identity policies: a user allowed through the account may hand the key to the account', async () => {
    const key = await newKey();
    const admin = await createPrincipal(h, {
      type: 'user', name: `keyadmin${seq++}`, identity: [{ Effect: 'Allow', Action: ['kms:PutKeyPolicy', 'kms:GetKeyPolicy'], Resource: '*' }],
    });
    // The account root statement keeps the admin (through its identity policy) able to manage the policy.
    await admin.kms.send(new PutKeyPolicyCommand({ KeyId: key.Arn, Policy: policyDoc([rootAll, { Effect: 'Allow', Principal: { AWS: ROOT }, Action: 'kms:Encrypt', Resource: '*' }]) }));
    // A policy naming only another user would lock the admin out.
    await rejects(admin.kms.send(new PutKeyPolicyCommand({ KeyId: key.Arn, Policy: onlyAlice })), 'MalformedPolicyDocumentException');
    // Bypassing is possible when the policies allow the caller to bypass.
    await admin.kms.send(new PutKeyPolicyCommand({ KeyId: key.Arn, Policy: onlyAlice, BypassPolicyLockoutSafetyCheck: true }));
    await rejects(admin.kms.send(new GetKeyPolicyCommand({ KeyId: key.Arn })), 'AccessDeniedException');
  });
});

describe('done when: an application role gets exactly Encrypt with tenant = a', () => {
  async function refusedEverythingElse(app: TestPrincipal, key: KeyMetadata, other: KeyMetadata) {
    const P = Buffer.from('secret');
    await app.kms.send(new EncryptCommand({ KeyId: key.Arn, Plaintext: P, EncryptionContext: { tenant: 'a' } }));
    const ct = (await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: P, EncryptionContext: { tenant: 'a' } }))).CiphertextBlob!;
    const attempts: [string, () => Promise<unknown>][] = [
      ['Encrypt', () => app.kms.send(new EncryptCommand({ KeyId: key.Arn, Plaintext: P, EncryptionContext: { tenant: 'b' } }))],
      ['Encrypt', () => app.kms.send(new EncryptCommand({ KeyId: key.Arn, Plaintext: P }))],
      ['Encrypt', () => app.kms.send(new EncryptCommand({ KeyId: key.Arn, Plaintext: P, EncryptionContext: { Tenant: 'A' } }))],
      ['Encrypt', () => app.kms.send(new EncryptCommand({ KeyId: other.Arn, Plaintext: P, EncryptionContext: { tenant: 'a' } }))],
      ['Decrypt', () => app.kms.send(new DecryptCommand({ CiphertextBlob: ct, EncryptionContext: { tenant: 'a' } }))],
      ['GenerateDataKey', () => app.kms.send(new GenerateDataKeyCommand({ KeyId: key.Arn, KeySpec: 'AES_256', EncryptionContext: { tenant: 'a' } }))],
      // ReEncrypt authorizes the destination first.
      ['ReEncryptTo', () => app.kms.send(new ReEncryptCommand({ CiphertextBlob: ct, SourceEncryptionContext: { tenant: 'a' }, DestinationKeyId: key.Arn, DestinationEncryptionContext: { tenant: 'a' } }))],
      ['DescribeKey', () => app.kms.send(new DescribeKeyCommand({ KeyId: key.Arn }))],
      ['CreateGrant', () => app.kms.send(new CreateGrantCommand({ KeyId: key.Arn, GranteePrincipal: app.arn, Operations: ['Decrypt'] }))],
      ['ListGrants', () => app.kms.send(new ListGrantsCommand({ KeyId: key.Arn }))],
      ['GetKeyPolicy', () => app.kms.send(new GetKeyPolicyCommand({ KeyId: key.Arn }))],
      ['PutKeyPolicy', () => app.kms.send(new PutKeyPolicyCommand({ KeyId: key.Arn, Policy: policyDoc([rootAll]) }))],
      ['DisableKey', () => app.kms.send(new DisableKeyCommand({ KeyId: key.Arn }))],
      ['TagResource', () => app.kms.send(new TagResourceCommand({ KeyId: key.Arn, Tags: [{ TagKey: 'a', TagValue: 'b' }] }))],
      ['CreateAlias', () => app.kms.send(new CreateAliasCommand({ AliasName: `alias/app-${seq++}`, TargetKeyId: key.KeyId }))],
      ['ListKeys', () => app.kms.send(new ListKeysCommand({}))],
      ['CreateKey', () => app.kms.send(new CreateKeyCommand({}))],
    ];
    for (const [action, attempt] of attempts) {
      const e = await rejects(attempt(), 'AccessDeniedException');
      expect(e.message).toMatch(new RegExp(`^User: ${app.arn} is not authorized to perform: kms:${action} on resource: \\S+ (because no (identity|resource)-based policy allows the kms:${action} action|with an explicit deny in a (resource|identity)-based policy)$`));
    }
  }

  it('by key policy', async () => {
    const app = await createPrincipal(h, { type: 'role', name: `app-policy-${seq++}` });
    const key = await newKey();
    const other = await newKey();
    await h.kms.send(new PutKeyPolicyCommand({
      KeyId: key.KeyId,
      Policy: policyDoc([rootAll, {
        Sid: 'AppEncryptsForTenantA', Effect: 'Allow', Principal: { AWS: app.arn }, Action: 'kms:Encrypt', Resource: '*',
        Condition: { StringEquals: { 'kms:EncryptionContext:tenant': 'a' } },
      }]),
    }));
    await refusedEverythingElse(app, key, other);
  });

  it('by grant', async () => {
    const app = await createPrincipal(h, { type: 'role', name: `app-grant-${seq++}` });
    const key = await newKey();
    const other = await newKey();
    const { GrantToken } = await h.kms.send(new CreateGrantCommand({
      KeyId: key.KeyId, GranteePrincipal: app.arn, Operations: ['Encrypt'], Constraints: { EncryptionContextEquals: { tenant: 'a' } },
    }));
    await refusedEverythingElse(app, key, other);
    // The grant token is accepted, and the grant ends when retired.
    await app.kms.send(new EncryptCommand({ KeyId: key.Arn, Plaintext: Buffer.from('x'), EncryptionContext: { tenant: 'a' }, GrantTokens: [GrantToken!] }));
    await h.kms.send(new RetireGrantCommand({ GrantToken }));
    await rejects(app.kms.send(new EncryptCommand({ KeyId: key.Arn, Plaintext: Buffer.from('x'), EncryptionContext: { tenant: 'a' } })), 'AccessDeniedException');
  });
});
