import {
  CancelKeyDeletionCommand, CreateAliasCommand, CreateGrantCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand,
  DisableKeyCommand, EnableKeyCommand, EncryptCommand, GenerateDataKeyCommand, ListAliasesCommand, ListGrantsCommand,
  ListResourceTagsCommand, ReEncryptCommand, RotateKeyOnDemandCommand, ScheduleKeyDeletionCommand, TagResourceCommand,
  UpdateKeyDescriptionCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, ManualClock, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { advance, DAY, restart, syncClock } from '../helpers/lifecycle.js';

const clock = new ManualClock(Date.parse('2031-06-01T12:00:00Z'));
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ clock });
  syncClock(h, clock);
});
afterAll(async () => {
  await h?.stop();
});

const newKey = async () => (await h.kms.send(new CreateKeyCommand({ Tags: [{ TagKey: 'team', TagValue: 'a' }] }))).KeyMetadata!;
const describe_ = async (KeyId: string) => (await h.kms.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!;
const objectsOf = (keyId: string) => inspectToken(h.token).filter((o) => o.label.startsWith(`p11kms:${keyId}:`));

describe('ScheduleKeyDeletion / CancelKeyDeletion', () => {
  it('schedules with the default 30-day window and returns AWS fields; the key refuses cryptographic use', async () => {
    const key = await newKey();
    const enc = await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('x') }));
    const out = await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId }));
    const deletionDate = new Date(clock.now().getTime() + 30 * DAY);
    expect(out).toMatchObject({ KeyId: key.Arn, KeyState: 'PendingDeletion', PendingWindowInDays: 30, DeletionDate: deletionDate });
    expect(await describe_(key.KeyId!)).toMatchObject({ KeyState: 'PendingDeletion', Enabled: false, DeletionDate: deletionDate });

    const other = await newKey();
    for (const call of [
      h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('x') })),
      h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })),
      h.kms.send(new GenerateDataKeyCommand({ KeyId: key.KeyId, KeySpec: 'AES_256' })),
      h.kms.send(new ReEncryptCommand({ CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: other.KeyId })),
      h.kms.send(new EnableKeyCommand({ KeyId: key.KeyId })),
      h.kms.send(new DisableKeyCommand({ KeyId: key.KeyId })),
      h.kms.send(new UpdateKeyDescriptionCommand({ KeyId: key.KeyId, Description: 'no' })),
      h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags: [{ TagKey: 'b', TagValue: 'c' }] })),
      h.kms.send(new CreateAliasCommand({ AliasName: `alias/late-${key.KeyId}`, TargetKeyId: key.KeyId })),
      h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId })),
    ]) {
      const e = await failure(call);
      expect(e.name).toBe('KMSInvalidStateException');
      expect(e.$metadata?.httpStatusCode).toBe(400);
      expect(e.message).toBe(`${key.Arn} is pending deletion.`);
    }
    // Reading still works.
    expect((await h.kms.send(new ListResourceTagsCommand({ KeyId: key.KeyId }))).Tags).toEqual([{ TagKey: 'team', TagValue: 'a' }]);
  });

  it('validates PendingWindowInDays (7–30) and changes nothing on bad input', async () => {
    const key = await newKey();
    for (const PendingWindowInDays of [6, 31, 365]) {
      const e = await failure(h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays })));
      expect(e.name).toBe('ValidationException');
    }
    const byAlias = await failure(h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: 'alias/nothing-here' })));
    expect(byAlias.name).toBe('NotFoundException');
    expect(await describe_(key.KeyId!)).toMatchObject({ KeyState: 'Enabled' });
    expect((await describe_(key.KeyId!)).DeletionDate).toBeUndefined();
  });

  it('CancelKeyDeletion leaves the key Disabled and usable again once enabled; refused on a key not pending deletion', async () => {
    const key = await newKey();
    const notPending = await failure(h.kms.send(new CancelKeyDeletionCommand({ KeyId: key.KeyId })));
    expect(notPending.name).toBe('KMSInvalidStateException');
    expect(notPending.message).toBe(`${key.Arn} is not pending deletion.`);

    await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays: 7 }));
    expect(await h.kms.send(new CancelKeyDeletionCommand({ KeyId: key.Arn }))).toMatchObject({ KeyId: key.Arn });
    const meta = await describe_(key.KeyId!);
    expect(meta).toMatchObject({ KeyState: 'Disabled', Enabled: false });
    expect(meta.DeletionDate).toBeUndefined();
    advance(h, clock, 8 * DAY);
    await h.daemon.scheduler.runOnce();
    expect(objectsOf(key.KeyId!)).toHaveLength(1);
    await h.kms.send(new EnableKeyCommand({ KeyId: key.KeyId }));
    await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('alive') }));
  });
});

describe('deletion when the date passes', () => {
  it('destroys every token object of the key (all versions), its aliases and tags; the key is NotFound afterwards', async () => {
    const key = await newKey();
    const bystander = await newKey();
    await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId }));
    await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId }));
    const alias = `alias/doomed-${key.KeyId}`;
    await h.kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: key.KeyId }));
    const enc = await h.kms.send(new EncryptCommand({ KeyId: alias, Plaintext: Buffer.from('gone soon') }));
    expect(objectsOf(key.KeyId!)).toHaveLength(3);

    await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays: 7 }));
    advance(h, clock, 7 * DAY - 60_000);
    await h.daemon.scheduler.runOnce();
    expect(objectsOf(key.KeyId!)).toHaveLength(3);
    expect((await describe_(key.KeyId!)).KeyState).toBe('PendingDeletion');

    advance(h, clock, 120_000);
    const report = await h.daemon.scheduler.runOnce();
    expect(report.keysDeleted).toBe(1);
    expect(objectsOf(key.KeyId!)).toEqual([]);
    expect(objectsOf(bystander.KeyId!)).toHaveLength(1);

    for (const call of [
      h.kms.send(new DescribeKeyCommand({ KeyId: key.KeyId })),
      h.kms.send(new EncryptCommand({ KeyId: alias, Plaintext: Buffer.from('x') })),
      h.kms.send(new ListResourceTagsCommand({ KeyId: key.KeyId })),
      h.kms.send(new CancelKeyDeletionCommand({ KeyId: key.KeyId })),
    ]) {
      expect((await failure(call)).name).toBe('NotFoundException');
    }
    expect((await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })))).name).toBe('InvalidCiphertextException');
    const aliases = (await h.kms.send(new ListAliasesCommand({}))).Aliases!;
    expect(aliases.some((a) => a.AliasName === alias)).toBe(false);
    // Rows are gone; the deletion is recorded.
    const { store } = h.daemon.deps;
    expect(store.listMaterials(key.KeyId!)).toEqual([]);
    expect(store.getTags(key.KeyId!)).toEqual([]);
    expect(store.lifecycle.getDeletion(key.KeyId!)).toMatchObject({
      arn: key.Arn, objectsDestroyed: 3, deletedAt: clock.now().getTime(),
    });
    await h.kms.send(new EncryptCommand({ KeyId: bystander.KeyId, Plaintext: Buffer.from('unaffected') }));
  });

  it('removes the key\'s grants with it', async () => {
    const key = await newKey();
    const grantee = 'arn:aws:iam::111122223333:role/app';
    const { GrantId } = await h.kms.send(
      new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: grantee, RetiringPrincipal: grantee, Operations: ['Encrypt'] }),
    );
    expect(h.daemon.deps.store.getGrant(GrantId!)).toBeDefined();
    await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays: 7 }));
    advance(h, clock, 7 * DAY + 60_000);
    expect((await h.daemon.scheduler.runOnce()).keysDeleted).toBe(1);
    expect(h.daemon.deps.store.getGrant(GrantId!)).toBeUndefined();
    expect(h.daemon.deps.store.grantsForKey(key.KeyId!)).toEqual([]);
    expect((await failure(h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId })))).name).toBe('NotFoundException');
  });

  it('deletes both halves of an asymmetric key pair and an HMAC key', async () => {
    const pair = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!;
    const hmac = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!;
    expect(objectsOf(pair.KeyId!).map((o) => o.cls).sort()).toEqual(['private', 'public']);
    expect(objectsOf(hmac.KeyId!)).toHaveLength(1);
    for (const k of [pair, hmac]) await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.KeyId, PendingWindowInDays: 7 }));
    advance(h, clock, 7 * DAY + 1000);
    expect((await h.daemon.scheduler.runOnce()).keysDeleted).toBe(2);
    expect(objectsOf(pair.KeyId!)).toEqual([]);
    expect(objectsOf(hmac.KeyId!)).toEqual([]);
    expect(h.daemon.deps.store.lifecycle.getDeletion(pair.KeyId!)?.objectsDestroyed).toBe(2);
  });

  it('a deletion that fell due while the daemon was down happens at start-up', async () => {
    const key = await newKey();
    await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays: 7 }));
    clock.advance(10 * DAY);
    h = await restart(h, clock);
    expect(objectsOf(key.KeyId!)).toEqual([]);
    expect((await failure(h.kms.send(new DescribeKeyCommand({ KeyId: key.KeyId })))).name).toBe('NotFoundException');
  });

  it('the scheduler runs by itself on its interval', async () => {
    h = await restart(h, clock, { P11KMS_SCHEDULER_INTERVAL_MS: '25' });
    const key = await newKey();
    await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays: 7 }));
    advance(h, clock, 7 * DAY + 1000);
    const deadline = Date.now() + 5000;
    for (;;) {
      const e = await h.kms.send(new DescribeKeyCommand({ KeyId: key.KeyId })).then(() => undefined, (err: Error) => err);
      if (e?.name === 'NotFoundException') break;
      if (Date.now() > deadline) throw new Error('the scheduler did not delete the key within 5 s');
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(objectsOf(key.KeyId!)).toEqual([]);
  });
});
