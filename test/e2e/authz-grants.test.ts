/**
 * Grants through the real daemon: CreateGrant (constraints, Name idempotency, limits,
 * delegation), grant tokens, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant, DryRun,
 * grants of another account, and grants removed with their key.
 */
import {
  CreateGrantCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand, DisableKeyCommand, EncryptCommand,
  GenerateDataKeyCommand, ListGrantsCommand, ListRetirableGrantsCommand, PutKeyPolicyCommand, ReEncryptCommand,
  RetireGrantCommand, RevokeGrantCommand, type GrantListEntry, type KeyMetadata,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grantLimits } from '../../src/kms/grants.js';
import { ACCOUNT as A, failure, startHarness, type Harness } from '../helpers/daemon.js';
import { createPrincipal, OTHER_ACCOUNT as B, policyDoc, type TestPrincipal } from '../helpers/principals.js';

let h: Harness;
let seq = 0;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const P = Buffer.from('grant test');
const newKey = async (): Promise<KeyMetadata> => (await h.kms.send(new CreateKeyCommand({ Description: 'grants' }))).KeyMetadata!;
const user = (identity?: object[], account = A) =>
  createPrincipal(h, { type: 'user', name: `grantee${seq++}`, account, identity });
async function rejects(p: Promise<unknown>, name: string) {
  const e = await failure(p);
  expect(e.name, `${e.name}: ${e.message}`).toBe(name);
  expect(e.$metadata?.httpStatusCode).toBe(400);
  return e;
}
const encryptAs = (p: TestPrincipal, key: KeyMetadata, EncryptionContext?: Record<string, string>, GrantTokens?: string[]) =>
  p.kms.send(new EncryptCommand({ KeyId: key.Arn, Plaintext: P, EncryptionContext, GrantTokens }));

describe('CreateGrant and grant use', () => {
  it('a grant with an EncryptionContextSubset constraint allows exactly its operations with that context', async () => {
    const key = await newKey();
    const grantee = await user();
    await rejects(encryptAs(grantee, key, { tenant: 'a' }), 'AccessDeniedException');
    const { GrantId, GrantToken } = await h.kms.send(new CreateGrantCommand({
      KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt', 'Decrypt'],
      Constraints: { EncryptionContextSubset: { tenant: 'a' } },
    }));
    expect(GrantId).toMatch(/^[0-9a-f]{64}$/);
    expect(GrantToken).toBeTruthy();
    // Effective at once, without the token; with the token too.
    const ct = (await encryptAs(grantee, key, { tenant: 'a', extra: 'x' })).CiphertextBlob!;
    await encryptAs(grantee, key, { tenant: 'a' }, [GrantToken!]);
    // Constraint keys ignore letter case; values do not.
    await encryptAs(grantee, key, { TENANT: 'a' });
    await rejects(encryptAs(grantee, key, { tenant: 'A' }), 'AccessDeniedException');
    await rejects(encryptAs(grantee, key, { tenant: 'b' }), 'AccessDeniedException');
    await rejects(encryptAs(grantee, key), 'AccessDeniedException');
    const dec = await grantee.kms.send(new DecryptCommand({ CiphertextBlob: ct, EncryptionContext: { tenant: 'a', extra: 'x' } }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('grant test');
    // Operations outside the grant stay refused.
    const e = await rejects(grantee.kms.send(new GenerateDataKeyCommand({ KeyId: key.Arn, KeySpec: 'AES_256', EncryptionContext: { tenant: 'a' } })), 'AccessDeniedException');
    expect(e.message).toBe(`User: ${grantee.arn} is not authorized to perform: kms:GenerateDataKey on resource: ${key.Arn} because no identity-based policy allows the kms:GenerateDataKey action`);
    await rejects(grantee.kms.send(new DescribeKeyCommand({ KeyId: key.Arn })), 'AccessDeniedException');
  });

  it('EncryptionContextEquals needs exactly that context', async () => {
    const key = await newKey();
    const grantee = await user();
    await h.kms.send(new CreateGrantCommand({
      KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt'], Constraints: { EncryptionContextEquals: { tenant: 'a' } },
    }));
    await encryptAs(grantee, key, { tenant: 'a' });
    await rejects(encryptAs(grantee, key, { tenant: 'a', more: 'x' }), 'AccessDeniedException');
  });

  it('constraints do not apply to operations without an encryption context (DescribeKey)', async () => {
    const key = await newKey();
    const grantee = await user();
    await h.kms.send(new CreateGrantCommand({
      KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['DescribeKey'], Constraints: { EncryptionContextSubset: { tenant: 'a' } },
    }));
    expect((await grantee.kms.send(new DescribeKeyCommand({ KeyId: key.Arn }))).KeyMetadata!.KeyId).toBe(key.KeyId);
  });

  it('ReEncrypt checks ReEncryptFrom against the source context and ReEncryptTo against the destination context', async () => {
    const key = await newKey();
    const grantee = await user();
    const ct = (await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: P, EncryptionContext: { stage: 'old' } }))).CiphertextBlob!;
    await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['ReEncryptFrom'], Constraints: { EncryptionContextSubset: { stage: 'old' } } }));
    await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['ReEncryptTo'], Constraints: { EncryptionContextSubset: { stage: 'new' } } }));
    const re = (ctx: string) => grantee.kms.send(new ReEncryptCommand({
      CiphertextBlob: ct, SourceEncryptionContext: { stage: 'old' }, DestinationKeyId: key.Arn, DestinationEncryptionContext: { stage: ctx },
    }));
    await re('new');
    await rejects(re('other'), 'AccessDeniedException');
  });

  it('a grant to an account root serves that root, and its users when their identity policy allows', async () => {
    const key = await newKey();
    await h.kms.send(new PutKeyPolicyCommand({
      KeyId: key.KeyId,
      Policy: policyDoc([{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${A}:root` }, Action: 'kms:*', Resource: '*' }]),
    }));
    const otherRoot = await createPrincipal(h, { type: 'root', account: B });
    const withPolicy = await user([{ Effect: 'Allow', Action: 'kms:Encrypt', Resource: '*' }], B);
    const without = await user(undefined, B);
    await rejects(encryptAs(otherRoot, key), 'AccessDeniedException');
    await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${B}:root`, Operations: ['Encrypt'] }));
    await encryptAs(otherRoot, key);
    await encryptAs(withPolicy, key);
    await rejects(encryptAs(without, key), 'AccessDeniedException');
  });

  it('a grant to a user of another account needs no key policy statement for that account', async () => {
    const key = await newKey();
    const carol = await user(undefined, B);
    await rejects(encryptAs(carol, key), 'AccessDeniedException');
    await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: carol.arn, Operations: ['Encrypt'] }));
    await encryptAs(carol, key);
  });

  it('Name makes CreateGrant idempotent: same parameters give the same grant, others a new one', async () => {
    const key = await newKey();
    const grantee = await user();
    const params = { KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt' as const, 'Decrypt' as const], Name: 'app-grant' };
    const first = await h.kms.send(new CreateGrantCommand(params));
    const again = await h.kms.send(new CreateGrantCommand({ ...params, Operations: ['Decrypt', 'Encrypt'] }));
    expect(again.GrantId).toBe(first.GrantId);
    expect(again.GrantToken).toBe(first.GrantToken);
    const other = await h.kms.send(new CreateGrantCommand({ ...params, Operations: ['Decrypt'] }));
    expect(other.GrantId).not.toBe(first.GrantId);
    const unnamed1 = await h.kms.send(new CreateGrantCommand({ ...params, Name: undefined }));
    const unnamed2 = await h.kms.send(new CreateGrantCommand({ ...params, Name: undefined }));
    expect(unnamed1.GrantId).not.toBe(unnamed2.GrantId);
    const all = (await h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId }))).Grants!;
    expect(all).toHaveLength(4);
    expect(all.find((g) => g.GrantId === first.GrantId)!.Name).toBe('app-grant');
  });

  it('validates its input: principals, operations for the key, constraint sizes, key state', async () => {
    const key = await newKey();
    const base = { KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${A}:user/x`, Operations: ['Encrypt' as const] };
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, GranteePrincipal: 'not-a-principal' })), 'ValidationException');
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, RetiringPrincipal: 'arn:aws:iam::1:user/x' })), 'ValidationException');
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, Operations: [] })), 'ValidationException');
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, Operations: ['Sign'] })), 'ValidationException');
    const nine = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, 'v']));
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, Constraints: { EncryptionContextSubset: nine } })), 'ValidationException');
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, Constraints: { EncryptionContextEquals: { k: 'v'.repeat(400) } } })), 'ValidationException');
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, KeyId: 'alias/not-allowed-here' })), 'NotFoundException');
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, GrantTokens: ['bogus'] })), 'InvalidGrantTokenException');
    await rejects(h.kms.send(new CreateGrantCommand({ ...base, GrantTokens: Array.from({ length: 11 }, () => 'x') })), 'ValidationException');
    await h.kms.send(new DisableKeyCommand({ KeyId: key.KeyId }));
    await rejects(h.kms.send(new CreateGrantCommand(base)), 'DisabledException');
  });

  it(`refuses more than the per-key limit of grants (${grantLimits.perKey}, lowered here)`, async () => {
    const key = await newKey();
    const saved = grantLimits.perKey;
    grantLimits.perKey = 3;
    try {
      for (let i = 0; i < 3; i++) {
        await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${A}:user/u${i}`, Operations: ['Decrypt'] }));
      }
      const e = await rejects(h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${A}:user/u9`, Operations: ['Decrypt'] })), 'LimitExceededException');
      expect(e.message).toMatch(/at most 3 grants/);
    } finally {
      grantLimits.perKey = saved;
    }
  });
});

describe('grant tokens', () => {
  it('are accepted wherever AWS accepts them and must be tokens this daemon issued', async () => {
    const key = await newKey();
    const grantee = await user();
    const { GrantToken } = await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt', 'DescribeKey', 'GenerateDataKey'] }));
    await encryptAs(grantee, key, undefined, [GrantToken!]);
    await grantee.kms.send(new DescribeKeyCommand({ KeyId: key.Arn, GrantTokens: [GrantToken!] }));
    await grantee.kms.send(new GenerateDataKeyCommand({ KeyId: key.Arn, KeySpec: 'AES_256', GrantTokens: [GrantToken!] }));
    await rejects(encryptAs(grantee, key, undefined, ['AAAA']), 'InvalidGrantTokenException');
    await rejects(encryptAs(grantee, key, undefined, [GrantToken!, 'not a token']), 'InvalidGrantTokenException');
    await rejects(encryptAs(grantee, key, undefined, Array.from({ length: 11 }, () => GrantToken!)), 'ValidationException');
  });
});

describe('CreateGrant through a grant (delegation)', () => {
  it('may hand on a subset of operations, with constraints at least as strict', async () => {
    const key = await newKey();
    const parent = await user();
    const child = await user();
    await h.kms.send(new CreateGrantCommand({
      KeyId: key.KeyId, GranteePrincipal: parent.arn, Operations: ['CreateGrant', 'Encrypt', 'Decrypt'],
      Constraints: { EncryptionContextSubset: { dept: 'IT' } },
    }));
    const create = (Operations: ('Encrypt' | 'Decrypt' | 'CreateGrant' | 'GenerateDataKey')[], Constraints?: object) =>
      parent.kms.send(new CreateGrantCommand({ KeyId: key.Arn, GranteePrincipal: child.arn, Operations, Constraints }));
    await create(['Encrypt'], { EncryptionContextSubset: { dept: 'IT', app: 'x' } });
    await create(['Decrypt', 'CreateGrant'], { EncryptionContextEquals: { dept: 'IT' } });
    await rejects(create(['GenerateDataKey'], { EncryptionContextSubset: { dept: 'IT' } }), 'AccessDeniedException');
    await rejects(create(['Encrypt']), 'AccessDeniedException');
    await rejects(create(['Encrypt'], { EncryptionContextSubset: { app: 'x' } }), 'AccessDeniedException');
    await encryptAs(child, key, { dept: 'IT', app: 'x' });
    await rejects(encryptAs(child, key, { dept: 'IT' }), 'AccessDeniedException');
    // The grandchild is bound by the child's Equals constraint.
    const grandchild = await user();
    await rejects(child.kms.send(new CreateGrantCommand({ KeyId: key.Arn, GranteePrincipal: grandchild.arn, Operations: ['Decrypt'], Constraints: { EncryptionContextSubset: { dept: 'IT' } } })), 'AccessDeniedException');
    await child.kms.send(new CreateGrantCommand({ KeyId: key.Arn, GranteePrincipal: grandchild.arn, Operations: ['Decrypt'], Constraints: { EncryptionContextEquals: { dept: 'IT' } } }));
  });
});

describe('ListGrants and ListRetirableGrants', () => {
  it('lists, filters by GrantId and GranteePrincipal, and pages', async () => {
    const key = await newKey();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await h.kms.send(new CreateGrantCommand({
        KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${A}:user/lister${i % 2}`, Operations: ['Decrypt'],
        RetiringPrincipal: `arn:aws:iam::${A}:role/retirer`, Constraints: i === 0 ? { EncryptionContextEquals: { a: 'b' } } : undefined,
      }))).GrantId!);
    }
    const seen: GrantListEntry[] = [];
    let Marker: string | undefined;
    let pages = 0;
    do {
      const page = await h.kms.send(new ListGrantsCommand({ KeyId: key.Arn, Limit: 2, Marker }));
      expect(page.Grants!.length).toBeLessThanOrEqual(2);
      expect(page.Truncated ?? false).toBe(page.NextMarker !== undefined);
      seen.push(...page.Grants!);
      Marker = page.NextMarker;
      pages++;
    } while (Marker);
    expect(pages).toBe(3);
    expect(seen.map((g) => g.GrantId).sort()).toEqual([...ids].sort());
    const g0 = seen.find((g) => g.GrantId === ids[0])!;
    expect(g0).toMatchObject({
      KeyId: key.Arn, IssuingAccount: `arn:aws:iam::${A}:root`, Operations: ['Decrypt'],
      GranteePrincipal: `arn:aws:iam::${A}:user/lister0`, RetiringPrincipal: `arn:aws:iam::${A}:role/retirer`,
      Constraints: { EncryptionContextEquals: { a: 'b' } },
    });
    expect(g0.CreationDate).toBeInstanceOf(Date);
    expect((await h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId, GrantId: ids[3] }))).Grants!.map((g) => g.GrantId)).toEqual([ids[3]]);
    expect((await h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${A}:user/lister1` }))).Grants).toHaveLength(2);
    await rejects(h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId, GrantId: 'nope' })), 'InvalidGrantIdException');
    await rejects(h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId, Marker: 'bm90IGEgbWFya2Vy!' })), 'InvalidMarkerException');

    const retirable = await h.kms.send(new ListRetirableGrantsCommand({ RetiringPrincipal: `arn:aws:iam::${A}:role/retirer` }));
    expect(retirable.Grants!.filter((g) => g.KeyId === key.Arn)).toHaveLength(5);
    // Only principals of the caller's account can be asked about.
    expect((await h.kms.send(new ListRetirableGrantsCommand({ RetiringPrincipal: `arn:aws:iam::${B}:role/retirer` }))).Grants).toEqual([]);
  });

  it('needs kms:ListGrants on the key (a grant cannot give it)', async () => {
    const key = await newKey();
    const grantee = await user();
    await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['DescribeKey'] }));
    await rejects(grantee.kms.send(new ListGrantsCommand({ KeyId: key.Arn })), 'AccessDeniedException');
    await rejects(grantee.kms.send(new ListRetirableGrantsCommand({ RetiringPrincipal: grantee.arn })), 'AccessDeniedException');
  });
});

describe('RetireGrant and RevokeGrant', () => {
  it('the retiring principal retires by grant token; the grant stops working at once', async () => {
    const key = await newKey();
    const grantee = await user();
    const retirer = await user();
    const { GrantToken, GrantId } = await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, RetiringPrincipal: retirer.arn, Operations: ['Encrypt'] }));
    await encryptAs(grantee, key);
    // Somebody else may not retire it.
    const stranger = await user();
    const e = await rejects(stranger.kms.send(new RetireGrantCommand({ GrantToken })), 'AccessDeniedException');
    expect(e.message).toContain('kms:RetireGrant');
    await rejects(retirer.kms.send(new RetireGrantCommand({ GrantToken: 'bogus' })), 'InvalidGrantTokenException');
    await retirer.kms.send(new RetireGrantCommand({ GrantToken }));
    await rejects(encryptAs(grantee, key), 'AccessDeniedException');
    await rejects(retirer.kms.send(new RetireGrantCommand({ GrantToken })), 'NotFoundException');
    expect((await h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId, GrantId }))).Grants).toEqual([]);
  });

  it('the grantee may retire only when the grant includes RetireGrant; the account may always', async () => {
    const key = await newKey();
    const grantee = await user();
    const g1 = await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt'] }));
    const g2 = await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt', 'RetireGrant'] }));
    await rejects(grantee.kms.send(new RetireGrantCommand({ KeyId: key.Arn, GrantId: g1.GrantId })), 'AccessDeniedException');
    await grantee.kms.send(new RetireGrantCommand({ KeyId: key.Arn, GrantId: g2.GrantId }));
    await h.kms.send(new RetireGrantCommand({ KeyId: key.Arn, GrantId: g1.GrantId }));
    expect((await h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId }))).Grants).toEqual([]);
    await rejects(h.kms.send(new RetireGrantCommand({})), 'ValidationException');
    await rejects(h.kms.send(new RetireGrantCommand({ KeyId: key.Arn, GrantId: 'x' })), 'InvalidGrantIdException');
  });

  it('an identity-policy Deny of kms:RetireGrant wins even for the retiring principal', async () => {
    const key = await newKey();
    const retirer = await user([{ Effect: 'Deny', Action: 'kms:RetireGrant', Resource: '*' }]);
    const { GrantToken } = await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${A}:user/any`, RetiringPrincipal: retirer.arn, Operations: ['Encrypt'] }));
    const e = await rejects(retirer.kms.send(new RetireGrantCommand({ GrantToken })), 'AccessDeniedException');
    expect(e.message).toMatch(/with an explicit deny in an identity-based policy$/);
  });

  it('RevokeGrant needs kms:RevokeGrant by policy', async () => {
    const key = await newKey();
    const grantee = await user();
    const admin = await user([{ Effect: 'Allow', Action: 'kms:RevokeGrant', Resource: '*' }]);
    const { GrantId } = await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt', 'RetireGrant'] }));
    await rejects(grantee.kms.send(new RevokeGrantCommand({ KeyId: key.Arn, GrantId })), 'AccessDeniedException');
    await admin.kms.send(new RevokeGrantCommand({ KeyId: key.Arn, GrantId }));
    await rejects(encryptAs(grantee, key), 'AccessDeniedException');
    await rejects(h.kms.send(new RevokeGrantCommand({ KeyId: key.KeyId, GrantId })), 'NotFoundException');
    await rejects(h.kms.send(new RevokeGrantCommand({ KeyId: key.KeyId, GrantId: 'abc' })), 'InvalidGrantIdException');
  });
});

describe('DryRun', () => {
  it('CreateGrant, RetireGrant and RevokeGrant authorize, answer DryRunOperationException, and change nothing', async () => {
    const key = await newKey();
    const grantee = await user();
    await rejects(h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt'], DryRun: true })), 'DryRunOperationException');
    expect((await h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId }))).Grants).toEqual([]);
    const { GrantId, GrantToken } = await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee.arn, Operations: ['Encrypt'] }));
    await rejects(h.kms.send(new RetireGrantCommand({ GrantToken, DryRun: true })), 'DryRunOperationException');
    await rejects(h.kms.send(new RevokeGrantCommand({ KeyId: key.KeyId, GrantId, DryRun: true })), 'DryRunOperationException');
    await encryptAs(grantee, key);
    // Without permission, DryRun reports the refusal, not success.
    await rejects(grantee.kms.send(new CreateGrantCommand({ KeyId: key.Arn, GranteePrincipal: grantee.arn, Operations: ['Encrypt'], DryRun: true })), 'AccessDeniedException');
    await rejects(grantee.kms.send(new RevokeGrantCommand({ KeyId: key.Arn, GrantId, DryRun: true })), 'AccessDeniedException');
    await rejects(grantee.kms.send(new EncryptCommand({ KeyId: key.Arn, Plaintext: P, DryRun: true })), 'DryRunOperationException');
  });
});

describe('grants and key deletion', () => {
  it('are removed with their key', async () => {
    const key = await newKey();
    const { GrantId } = await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${A}:user/x`, Operations: ['Encrypt'] }));
    const store = h.daemon.deps.store;
    expect(store.grantsForKey(key.KeyId!)).toHaveLength(1);
    store.deleteKey(key.KeyId!);
    expect(store.getGrant(GrantId!)).toBeUndefined();
    expect(store.grantsForKey(key.KeyId!)).toEqual([]);
    await rejects(h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId })), 'NotFoundException');
  });
});
