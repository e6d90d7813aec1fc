import {
  CancelKeyDeletionCommand, CreateAliasCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand,
  DisableKeyCommand, DisableKeyRotationCommand, EnableKeyCommand, EnableKeyRotationCommand, EncryptCommand,
  GenerateDataKeyCommand, GetKeyRotationStatusCommand, ListKeyRotationsCommand, ReEncryptCommand,
  RotateKeyOnDemandCommand, ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, ManualClock, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { advance, DAY, restart, syncClock, versionOf } from '../helpers/lifecycle.js';

const clock = new ManualClock(Date.parse('2030-01-01T00:00:00Z'));
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ clock });
  syncClock(h, clock);
});
afterAll(async () => {
  await h?.stop();
});

const newKey = async () => (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
const status = (KeyId: string) => h.kms.send(new GetKeyRotationStatusCommand({ KeyId }));
const rotations = async (KeyId: string, IncludeKeyMaterial?: 'ALL_KEY_MATERIAL' | 'ROTATIONS_ONLY') =>
  (await h.kms.send(new ListKeyRotationsCommand({ KeyId, IncludeKeyMaterial }))).Rotations!;
const encrypt = (KeyId: string, text: string) =>
  h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from(text), EncryptionContext: { t: text } }));
const decrypt = async (blob: Uint8Array, text: string) =>
  Buffer.from((await h.kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { t: text } }))).Plaintext!).toString();
const currentMaterial = async (KeyId: string) =>
  (await h.kms.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!.CurrentKeyMaterialId!;

describe('versioned rotation', () => {
  it('ciphertexts made before any number of rotations still decrypt; new ones use the newest material', async () => {
    const key = await newKey();
    const made: { text: string; blob: Uint8Array; material: string }[] = [];
    const materials = [key.CurrentKeyMaterialId!];
    for (let i = 0; i < 5; i++) {
      const text = `before rotation ${i + 1}`;
      const enc = await encrypt(key.KeyId!, text);
      expect(versionOf(enc.CiphertextBlob!)).toBe(i + 1);
      made.push({ text, blob: enc.CiphertextBlob!, material: materials[i]! });
      expect(await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId }))).toMatchObject({ KeyId: key.KeyId });
      const now = await currentMaterial(key.KeyId!);
      expect(materials).not.toContain(now);
      materials.push(now);
    }
    for (const m of made) {
      const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: m.blob, EncryptionContext: { t: m.text } }));
      expect(Buffer.from(dec.Plaintext!).toString()).toBe(m.text);
      expect(dec.KeyMaterialId).toBe(m.material);
    }
    // New work uses version 6, the current material.
    const latest = materials[5];
    const enc = await encrypt(key.KeyId!, 'after');
    expect(versionOf(enc.CiphertextBlob!)).toBe(6);
    const dk = await h.kms.send(new GenerateDataKeyCommand({ KeyId: key.KeyId, KeySpec: 'AES_256' }));
    expect(dk.KeyMaterialId).toBe(latest);
    expect(versionOf(dk.CiphertextBlob!)).toBe(6);
    const re = await h.kms.send(new ReEncryptCommand({
      CiphertextBlob: made[0]!.blob, SourceEncryptionContext: { t: made[0]!.text }, DestinationKeyId: key.KeyId,
    }));
    expect(re.SourceKeyMaterialId).toBe(materials[0]);
    expect(re.DestinationKeyMaterialId).toBe(latest);
    expect(versionOf(re.CiphertextBlob!)).toBe(6);

    // One non-extractable token object per version, named by version.
    const objects = inspectToken(h.token).filter((o) => o.label.startsWith(`p11kms:${key.KeyId}:`));
    expect(objects.map((o) => o.label).sort()).toEqual([1, 2, 3, 4, 5, 6].map((v) => `p11kms:${key.KeyId}:v${v}`));
    for (const o of objects) {
      expect(o).toMatchObject({ sensitive: true, extractable: false, neverExtractable: true });
      expect(o.valueRead).toBe('CKR_ATTRIBUTE_SENSITIVE');
      expect(o.wrapped).not.toBe('WRAPPED');
    }
  });

  it('ListKeyRotations lists rotations (and, on request, the first material) with paging', async () => {
    const key = await newKey();
    for (let i = 0; i < 3; i++) await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId }));
    const current = await currentMaterial(key.KeyId!);
    const only = await rotations(key.KeyId!);
    expect(only).toHaveLength(3);
    for (const r of only) {
      expect(r).toMatchObject({ KeyId: key.KeyId, RotationType: 'ON_DEMAND' });
      expect(r.KeyMaterialId).toMatch(/^[0-9a-f]{64}$/);
      expect(r.RotationDate).toEqual(clock.now());
    }
    expect(only.map((r) => r.KeyMaterialState)).toEqual(['NON_CURRENT', 'NON_CURRENT', 'CURRENT']);
    expect(only[2]!.KeyMaterialId).toBe(current);

    const all = await rotations(key.KeyId!, 'ALL_KEY_MATERIAL');
    expect(all).toHaveLength(4);
    expect(all[0]).toMatchObject({ KeyMaterialId: key.CurrentKeyMaterialId, KeyMaterialState: 'NON_CURRENT' });
    expect(all[0]!.RotationType).toBeUndefined();

    const seen: string[] = [];
    let Marker: string | undefined;
    let pages = 0;
    do {
      const page = await h.kms.send(new ListKeyRotationsCommand({ KeyId: key.KeyId, IncludeKeyMaterial: 'ALL_KEY_MATERIAL', Limit: 3, Marker }));
      expect(page.Truncated).toBe(page.NextMarker !== undefined);
      seen.push(...page.Rotations!.map((r) => r.KeyMaterialId!));
      Marker = page.NextMarker;
      pages++;
    } while (Marker);
    expect(pages).toBe(2);
    expect(seen).toEqual(all.map((r) => r.KeyMaterialId));

    const bad = await failure(h.kms.send(new ListKeyRotationsCommand({ KeyId: key.KeyId, Marker: 'not-a-marker' })));
    expect(bad.name).toBe('InvalidMarkerException');
    expect(await rotations((await newKey()).KeyId!)).toEqual([]);
  });

  it('refuses what AWS refuses: aliases as KeyId, disabled keys, keys pending deletion, more than 25 on-demand rotations', async () => {
    const key = await newKey();
    await h.kms.send(new CreateAliasCommand({ AliasName: `alias/rot-${key.KeyId}`, TargetKeyId: key.KeyId }));
    const byAlias = await failure(h.kms.send(new RotateKeyOnDemandCommand({ KeyId: `alias/rot-${key.KeyId}` })));
    expect(byAlias.name).toBe('NotFoundException');

    await h.kms.send(new DisableKeyCommand({ KeyId: key.KeyId }));
    for (const call of [
      h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId })),
      h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId })),
      h.kms.send(new DisableKeyRotationCommand({ KeyId: key.KeyId })),
    ]) {
      const e = await failure(call);
      expect(e.name).toBe('DisabledException');
      expect(e.message).toBe(`${key.Arn} is disabled.`);
    }
    await h.kms.send(new EnableKeyCommand({ KeyId: key.KeyId }));

    await h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId }));
    await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays: 7 }));
    for (const call of [
      h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId })),
      h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId })),
    ]) {
      const e = await failure(call);
      expect(e.name).toBe('KMSInvalidStateException');
      expect(e.message).toBe(`${key.Arn} is pending deletion.`);
    }
    // Pending deletion reads as "not rotating"; cancelling gives the status back.
    expect((await status(key.KeyId!)).KeyRotationEnabled).toBe(false);
    await h.kms.send(new CancelKeyDeletionCommand({ KeyId: key.KeyId }));
    expect((await status(key.KeyId!)).KeyRotationEnabled).toBe(true);
    expect(await rotations(key.KeyId!)).toEqual([]);

    const limited = await newKey();
    for (let i = 0; i < 25; i++) await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: limited.KeyId }));
    const before = await currentMaterial(limited.KeyId!);
    const e = await failure(h.kms.send(new RotateKeyOnDemandCommand({ KeyId: limited.KeyId })));
    expect(e.name).toBe('LimitExceededException');
    expect(await currentMaterial(limited.KeyId!)).toBe(before);
    expect(await rotations(limited.KeyId!)).toHaveLength(25);
  });

  it('concurrent on-demand rotations either rotate or answer ConflictException; versions stay consecutive', async () => {
    const key = await newKey();
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId }))),
    );
    const done = results.filter((r) => r.status === 'fulfilled').length;
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as Error).name).toBe('ConflictException');
    }
    expect(done).toBeGreaterThanOrEqual(1);
    expect(await rotations(key.KeyId!)).toHaveLength(done);
    const versions = h.daemon.deps.store.listMaterials(key.KeyId!).map((m) => [m.version, m.state]);
    expect(versions).toEqual(Array.from({ length: done + 1 }, (_, i) => [i + 1, 'active']));
    expect(versionOf((await encrypt(key.KeyId!, 'x')).CiphertextBlob!)).toBe(done + 1);
  });

  it('asymmetric and HMAC keys cannot rotate (UnsupportedOperationException) and report rotation disabled', async () => {
    for (const spec of [
      { KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' },
      { KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' },
      { KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' },
    ] as const) {
      const key = (await h.kms.send(new CreateKeyCommand(spec))).KeyMetadata!;
      for (const call of [
        h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId })),
        h.kms.send(new DisableKeyRotationCommand({ KeyId: key.KeyId })),
        h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId })),
        h.kms.send(new ListKeyRotationsCommand({ KeyId: key.KeyId })),
      ]) {
        const e = await failure(call);
        expect(e.name).toBe('UnsupportedOperationException');
        expect(e.message).toBe(`${key.Arn} key spec ${spec.KeySpec} is not valid for this operation.`);
      }
      expect((await status(key.KeyId!)).KeyRotationEnabled).toBe(false);
    }
  });

  it('validates RotationPeriodInDays (90–2560, default 365) and changes nothing on bad input', async () => {
    const key = await newKey();
    for (const RotationPeriodInDays of [89, 2561]) {
      const e = await failure(h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId, RotationPeriodInDays })));
      expect(e.name).toBe('ValidationException');
      expect(e.$metadata?.httpStatusCode).toBe(400);
    }
    expect(await status(key.KeyId!)).toMatchObject({ KeyRotationEnabled: false, KeyId: key.KeyId });
    expect((await status(key.KeyId!)).NextRotationDate).toBeUndefined();

    await h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId }));
    const s = await status(key.KeyId!);
    expect(s).toMatchObject({ KeyRotationEnabled: true, RotationPeriodInDays: 365 });
    expect(s.NextRotationDate).toEqual(new Date(clock.now().getTime() + 365 * DAY));
    // Changing the period keeps the anchor (the enable date).
    await h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId, RotationPeriodInDays: 2560 }));
    expect((await status(key.KeyId!)).NextRotationDate).toEqual(new Date(clock.now().getTime() + 2560 * DAY));
    await h.kms.send(new DisableKeyRotationCommand({ KeyId: key.KeyId }));
    expect(await status(key.KeyId!)).toMatchObject({ KeyRotationEnabled: false });
  });
});

describe('automatic rotation on the clock', () => {
  it('rotates when the period has passed, not before; a disabled key waits and rotates once when enabled again', async () => {
    const key = await newKey();
    const disabled = await newKey();
    const notEnabled = await newKey();
    await h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId, RotationPeriodInDays: 90 }));
    await h.kms.send(new EnableKeyRotationCommand({ KeyId: disabled.KeyId, RotationPeriodInDays: 90 }));
    await h.kms.send(new DisableKeyCommand({ KeyId: disabled.KeyId }));
    const enc = await encrypt(key.KeyId!, 'old');

    advance(h, clock, 90 * DAY - 60_000);
    await h.daemon.scheduler.runOnce();
    expect(await rotations(key.KeyId!)).toEqual([]);

    advance(h, clock, 120_000);
    const rotatedAt = clock.now();
    const report = await h.daemon.scheduler.runOnce();
    expect(report.keysRotated).toBeGreaterThanOrEqual(1);
    const r = await rotations(key.KeyId!);
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ RotationType: 'AUTOMATIC', KeyMaterialState: 'CURRENT', RotationDate: rotatedAt });
    expect((await status(key.KeyId!)).NextRotationDate).toEqual(new Date(rotatedAt.getTime() + 90 * DAY));
    expect(await decrypt(enc.CiphertextBlob!, 'old')).toBe('old');
    expect(versionOf((await encrypt(key.KeyId!, 'new')).CiphertextBlob!)).toBe(2);
    expect(await rotations(disabled.KeyId!)).toEqual([]);
    expect(await rotations(notEnabled.KeyId!)).toEqual([]);

    // A second tick at the same time does nothing more.
    await h.daemon.scheduler.runOnce();
    expect(await rotations(key.KeyId!)).toHaveLength(1);

    // Re-enabled after its date: one rotation at the next tick, then the normal period.
    advance(h, clock, 30 * DAY);
    await h.kms.send(new EnableKeyCommand({ KeyId: disabled.KeyId }));
    await h.daemon.scheduler.runOnce();
    expect(await rotations(disabled.KeyId!)).toHaveLength(1);
    expect((await status(disabled.KeyId!)).NextRotationDate).toEqual(new Date(clock.now().getTime() + 90 * DAY));
  });

  it('on-demand rotation is refused with ConflictException while an automatic one is due within 20 minutes', async () => {
    const key = await newKey();
    await h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId, RotationPeriodInDays: 90 }));
    advance(h, clock, 90 * DAY - 10 * 60_000);
    const e = await failure(h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId })));
    expect(e.name).toBe('ConflictException');
    expect(await rotations(key.KeyId!)).toEqual([]);
  });

  it('survives a restart and catches up once after downtime, never a burst', async () => {
    const key = await newKey();
    await h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId, RotationPeriodInDays: 90 }));
    const enc = await encrypt(key.KeyId!, 'before downtime');
    clock.advance(400 * DAY); // more than four periods while the daemon is down
    h = await restart(h, clock);
    // The start-up tick has already run.
    const r = await rotations(key.KeyId!);
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ RotationType: 'AUTOMATIC', RotationDate: clock.now() });
    expect((await status(key.KeyId!)).NextRotationDate).toEqual(new Date(clock.now().getTime() + 90 * DAY));
    await h.daemon.scheduler.runOnce();
    expect(await rotations(key.KeyId!)).toHaveLength(1);
    expect(await decrypt(enc.CiphertextBlob!, 'before downtime')).toBe('before downtime');
  });
});
