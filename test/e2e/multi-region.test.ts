import {
  CancelKeyDeletionCommand, CreateAliasCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand, DisableKeyCommand,
  EnableKeyCommand, EnableKeyRotationCommand, EncryptCommand, GenerateMacCommand, GetKeyPolicyCommand, GetKeyRotationStatusCommand,
  GetParametersForImportCommand, ImportKeyMaterialCommand, KMSClient, ListAliasesCommand, ListKeyRotationsCommand, ListKeysCommand,
  ListResourceTagsCommand, ReplicateKeyCommand, RotateKeyOnDemandCommand, ScheduleKeyDeletionCommand, SignCommand,
  UpdatePrimaryRegionCommand, VerifyCommand, VerifyMacCommand,
} from '@aws-sdk/client-kms';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, failure, ManualClock, startHarness, type Harness } from '../helpers/daemon.js';
import { DAY, restart, wrapOaep } from '../helpers/lifecycle.js';
import { sharedPgCluster, testStoreIsPostgres } from '../helpers/postgres.js';

/**
 * Regions and Multi-Region keys on one deployment (issue 13): us-east-1 (the default) and
 * eu-west-1 share the main token; clients of both regions use the real AWS SDK against one daemon.
 * In the postgres project both regions' metadata is in one PostgreSQL database, eu-west-1's in
 * its own schema; on SQLite eu-west-1 has its own file.
 */
const clock = new ManualClock(Date.parse('2031-06-01T12:00:00Z'));
let h: Harness;
let east: KMSClient;
let west: KMSClient;
const plaintext = Buffer.from('readable in both regions');

function clients(): void {
  const offset = clock.now().getTime() - Date.now();
  const make = (region: string) =>
    new KMSClient({ endpoint: h.endpoint, region, credentials: ADMIN, maxAttempts: 1, systemClockOffset: offset });
  east = make('us-east-1');
  west = make('eu-west-1');
}

beforeAll(async () => {
  h = await startHarness({ clock, env: { P11KMS_REGIONS: 'eu-west-1' } });
  clients();
});
afterAll(async () => h?.stop());

async function tick(days: number): Promise<void> {
  clock.advance(days * DAY);
  clients();
  await h.daemon.scheduler.runOnce();
  for (const s of h.daemon.regionSchedulers) await s.runOnce();
}

describe('regions', () => {
  it('keys, aliases and listings are per region; another region\'s key is NotFound by id and by ARN', async () => {
    const { KeyMetadata: k } = await east.send(new CreateKeyCommand({}));
    expect(k?.Arn).toBe(`arn:aws:kms:us-east-1:111122223333:key/${k?.KeyId}`);
    const byId = await failure(west.send(new DescribeKeyCommand({ KeyId: k?.KeyId })));
    expect(byId.name).toBe('NotFoundException');
    expect(byId.message).toBe(`Key 'arn:aws:kms:eu-west-1:111122223333:key/${k?.KeyId}' does not exist`);
    const byArn = await failure(west.send(new EncryptCommand({ KeyId: k?.Arn, Plaintext: plaintext })));
    expect(byArn.name).toBe('NotFoundException');
    expect(byArn.message).toBe('Invalid arn us-east-1');
    const { KeyMetadata: w } = await west.send(new CreateKeyCommand({}));
    expect(w?.Arn).toMatch(/^arn:aws:kms:eu-west-1:/);
    const eastIds = (await east.send(new ListKeysCommand({}))).Keys?.map((x) => x.KeyId);
    const westIds = (await west.send(new ListKeysCommand({}))).Keys?.map((x) => x.KeyId);
    expect(eastIds).toContain(k?.KeyId);
    expect(eastIds).not.toContain(w?.KeyId);
    expect(westIds).toEqual([w?.KeyId]);
    // The same alias name in both regions names each region's own key.
    await east.send(new CreateAliasCommand({ AliasName: 'alias/app', TargetKeyId: k?.KeyId }));
    await west.send(new CreateAliasCommand({ AliasName: 'alias/app', TargetKeyId: w?.KeyId }));
    expect((await west.send(new DescribeKeyCommand({ KeyId: 'alias/app' }))).KeyMetadata?.KeyId).toBe(w?.KeyId);
    expect((await west.send(new ListAliasesCommand({}))).Aliases?.[0]?.AliasArn).toBe('arn:aws:kms:eu-west-1:111122223333:alias/app');
    // Where each region's metadata is.
    const regionFile = join(h.config.dataDir, 'regions', 'eu-west-1', 'metadata.sqlite');
    if (testStoreIsPostgres) {
      const db = new URL(h.config.database!.url.reveal()).pathname.slice(1);
      const psql = (sql: string) => sharedPgCluster().psql(db, sql).trim().split('\n').filter(Boolean);
      expect(psql('SELECT key_id FROM p11kms_eu_west_1.keys')).toEqual([w?.KeyId]);
      expect(psql('SELECT key_id FROM public.keys')).toEqual([k?.KeyId]);
      expect(psql("SELECT account_id || ' ' || alias_name || ' ' || key_id FROM p11kms_eu_west_1.aliases")).toEqual([`111122223333 alias/app ${w?.KeyId}`]);
      expect(psql('SELECT max(version) FROM p11kms_eu_west_1.p11kms_schema')).toEqual(psql('SELECT max(version) FROM public.p11kms_schema'));
      expect(existsSync(regionFile)).toBe(false);
    } else {
      expect(existsSync(regionFile)).toBe(true);
    }
  });

  it('a region that is not served is refused at authentication', async () => {
    const other = new KMSClient({ endpoint: h.endpoint, region: 'ap-south-1', credentials: ADMIN, maxAttempts: 1, systemClockOffset: clock.now().getTime() - Date.now() });
    const e = await failure(other.send(new ListKeysCommand({})));
    expect(e.name).toBe('InvalidSignatureException');
  });
});

describe('Multi-Region keys', () => {
  let keyId: string;
  let eastBlob: Uint8Array;
  let importedBlob: Uint8Array;

  it('CreateKey MultiRegion gives an mrk- primary; ReplicateKey makes a replica with its own policy, description and tags', async () => {
    const { KeyMetadata: k } = await east.send(new CreateKeyCommand({ MultiRegion: true, Description: 'primary' }));
    keyId = k?.KeyId as string;
    expect(keyId).toMatch(/^mrk-[0-9a-f]{32}$/);
    expect(k?.MultiRegion).toBe(true);
    expect(k?.MultiRegionConfiguration).toEqual({
      MultiRegionKeyType: 'PRIMARY', PrimaryKey: { Arn: k?.Arn, Region: 'us-east-1' }, ReplicaKeys: [],
    });
    eastBlob = (await east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: { a: 'b' } }))).CiphertextBlob!;
    const policy = JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Sid: 'root', Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::111122223333:root' }, Action: 'kms:*', Resource: '*' }],
    });
    const r = await east.send(new ReplicateKeyCommand({
      KeyId: keyId, ReplicaRegion: 'eu-west-1', Description: 'replica', Policy: policy, Tags: [{ TagKey: 'site', TagValue: 'west' }],
    }));
    const replicaArn = `arn:aws:kms:eu-west-1:111122223333:key/${keyId}`;
    expect(r.ReplicaKeyMetadata).toMatchObject({ KeyId: keyId, Arn: replicaArn, Description: 'replica', KeyState: 'Enabled', MultiRegion: true });
    expect(r.ReplicaKeyMetadata?.MultiRegionConfiguration).toEqual({
      MultiRegionKeyType: 'REPLICA', PrimaryKey: { Arn: k?.Arn, Region: 'us-east-1' }, ReplicaKeys: [{ Arn: replicaArn, Region: 'eu-west-1' }],
    });
    expect(r.ReplicaPolicy).toBe(policy);
    expect(r.ReplicaTags).toEqual([{ TagKey: 'site', TagValue: 'west' }]);
    const primary = (await east.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata;
    expect(primary?.Description).toBe('primary');
    expect(primary?.MultiRegionConfiguration?.ReplicaKeys).toEqual([{ Arn: replicaArn, Region: 'eu-west-1' }]);
    expect((await east.send(new ListResourceTagsCommand({ KeyId: keyId }))).Tags).toEqual([]);
    expect((await east.send(new GetKeyPolicyCommand({ KeyId: keyId }))).Policy).not.toBe(policy);
  });

  it('a ciphertext of either copy decrypts with the other', async () => {
    const inWest = await west.send(new DecryptCommand({ CiphertextBlob: eastBlob, EncryptionContext: { a: 'b' } }));
    expect(Buffer.from(inWest.Plaintext!)).toEqual(plaintext);
    expect(inWest.KeyId).toBe(`arn:aws:kms:eu-west-1:111122223333:key/${keyId}`);
    const westBlob = (await west.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: westBlob }))).Plaintext!)).toEqual(plaintext);
  });

  it('key state is each copy\'s own', async () => {
    await west.send(new DisableKeyCommand({ KeyId: keyId }));
    expect((await failure(west.send(new DecryptCommand({ CiphertextBlob: eastBlob, EncryptionContext: { a: 'b' } })))).name).toBe('DisabledException');
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: eastBlob, EncryptionContext: { a: 'b' } }))).Plaintext!)).toEqual(plaintext);
    await west.send(new EnableKeyCommand({ KeyId: keyId }));
  });

  it('refuses what AWS refuses', async () => {
    const again = await failure(east.send(new ReplicateKeyCommand({ KeyId: keyId, ReplicaRegion: 'eu-west-1' })));
    expect(again.name).toBe('AlreadyExistsException');
    const self = await failure(east.send(new ReplicateKeyCommand({ KeyId: keyId, ReplicaRegion: 'us-east-1' })));
    expect(self.name).toBe('AlreadyExistsException');
    const fromReplica = await failure(west.send(new ReplicateKeyCommand({ KeyId: keyId, ReplicaRegion: 'us-east-1' })));
    expect(fromReplica.name).toBe('UnsupportedOperationException');
    const unknown = await failure(east.send(new ReplicateKeyCommand({ KeyId: keyId, ReplicaRegion: 'ap-south-1' })));
    expect(unknown.name).toBe('UnsupportedOperationException');
    const bad = await failure(east.send(new ReplicateKeyCommand({ KeyId: keyId, ReplicaRegion: 'nowhere' })));
    expect(bad.name).toBe('ValidationException');
    const single = (await east.send(new CreateKeyCommand({}))).KeyMetadata?.KeyId;
    const notMrk = await failure(east.send(new ReplicateKeyCommand({ KeyId: single, ReplicaRegion: 'eu-west-1' })));
    expect(notMrk.name).toBe('UnsupportedOperationException');
    const rotateReplica = await failure(west.send(new EnableKeyRotationCommand({ KeyId: keyId })));
    expect(rotateReplica.name).toBe('UnsupportedOperationException');
    const noReplica = await failure(east.send(new UpdatePrimaryRegionCommand({ KeyId: keyId, PrimaryRegion: 'ap-south-1' })));
    expect(noReplica.name).toBe('NotFoundException');
    const inKeyStore = await failure(east.send(new CreateKeyCommand({ MultiRegion: true, Origin: 'AWS_CLOUDHSM', CustomKeyStoreId: 'cks-1234567890abcdef0' })));
    expect(inKeyStore.name).toBe('UnsupportedOperationException');
  });

  it('rotation of the primary is shared by the replica', async () => {
    await east.send(new EnableKeyRotationCommand({ KeyId: keyId, RotationPeriodInDays: 90 }));
    const status = await west.send(new GetKeyRotationStatusCommand({ KeyId: keyId }));
    expect(status).toMatchObject({ KeyRotationEnabled: true, RotationPeriodInDays: 90 });
    await east.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
    const rotations = (await west.send(new ListKeyRotationsCommand({ KeyId: keyId }))).Rotations ?? [];
    expect(rotations).toHaveLength(1);
    expect(rotations[0]?.RotationType).toBe('ON_DEMAND');
    const v2 = (await east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(v2).readUInt32BE(17)).toBe(2);
    expect(Buffer.from((await west.send(new DecryptCommand({ CiphertextBlob: v2 }))).Plaintext!)).toEqual(plaintext);
    const w2 = (await west.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(w2).readUInt32BE(17)).toBe(2);
    // Automatic rotation runs on the primary and reaches the replica.
    await tick(91);
    const w3 = (await west.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(w3).readUInt32BE(17)).toBe(3);
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: w3 }))).Plaintext!)).toEqual(plaintext);
  });

  it('UpdatePrimaryRegion makes the replica the primary', async () => {
    await east.send(new UpdatePrimaryRegionCommand({ KeyId: keyId, PrimaryRegion: 'eu-west-1' }));
    const west1 = (await west.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata;
    expect(west1?.MultiRegionConfiguration?.MultiRegionKeyType).toBe('PRIMARY');
    expect(west1?.MultiRegionConfiguration?.ReplicaKeys).toEqual([{ Arn: `arn:aws:kms:us-east-1:111122223333:key/${keyId}`, Region: 'us-east-1' }]);
    const east1 = (await east.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata;
    expect(east1?.MultiRegionConfiguration?.MultiRegionKeyType).toBe('REPLICA');
    expect((await failure(east.send(new RotateKeyOnDemandCommand({ KeyId: keyId })))).name).toBe('UnsupportedOperationException');
    // The rotation schedule moved with the primary.
    await tick(91);
    const e4 = (await east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(e4).readUInt32BE(17)).toBe(4);
    await west.send(new UpdatePrimaryRegionCommand({ KeyId: keyId, PrimaryRegion: 'us-east-1' }));
  });

  it('a primary with replicas waits in PendingReplicaDeletion; the shared material outlives the replica', async () => {
    const s = await east.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
    expect(s.KeyState).toBe('PendingReplicaDeletion');
    expect(s.DeletionDate).toBeUndefined();
    const d = (await east.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata;
    expect(d).toMatchObject({ KeyState: 'PendingReplicaDeletion', PendingDeletionWindowInDays: 7 });
    expect((await failure(east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext })))).name).toBe('KMSInvalidStateException');
    await west.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
    await tick(8);
    expect((await failure(west.send(new DescribeKeyCommand({ KeyId: keyId })))).name).toBe('NotFoundException');
    const after = (await east.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata;
    expect(after?.KeyState).toBe('PendingDeletion');
    expect(after?.DeletionDate?.getTime()).toBe(clock.now().getTime() + 7 * DAY);
    expect(after?.MultiRegionConfiguration?.ReplicaKeys).toEqual([]);
    // The replica's deletion left the primary's (shared) token objects in place.
    await east.send(new CancelKeyDeletionCommand({ KeyId: keyId }));
    await east.send(new EnableKeyCommand({ KeyId: keyId }));
    const back = await east.send(new DecryptCommand({ CiphertextBlob: eastBlob, EncryptionContext: { a: 'b' } }));
    expect(Buffer.from(back.Plaintext!)).toEqual(plaintext);
  });

  it('a replica deleted while its primary rotates is not recreated; the primary keeps rotating', async () => {
    const k = (await east.send(new CreateKeyCommand({ MultiRegion: true }))).KeyMetadata!.KeyId!;
    await east.send(new ReplicateKeyCommand({ KeyId: k, ReplicaRegion: 'eu-west-1' }));
    await west.send(new ScheduleKeyDeletionCommand({ KeyId: k, PendingWindowInDays: 7 }));
    await east.send(new RotateKeyOnDemandCommand({ KeyId: k }));
    await tick(8);
    expect((await failure(west.send(new DescribeKeyCommand({ KeyId: k })))).name).toBe('NotFoundException');
    await east.send(new RotateKeyOnDemandCommand({ KeyId: k }));
    await tick(1);
    expect((await failure(west.send(new DescribeKeyCommand({ KeyId: k })))).name).toBe('NotFoundException');
    const blob = (await east.send(new EncryptCommand({ KeyId: k, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(blob).readUInt32BE(17)).toBe(3);
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!)).toEqual(plaintext);
    expect((await east.send(new DescribeKeyCommand({ KeyId: k }))).KeyMetadata?.MultiRegionConfiguration?.ReplicaKeys).toEqual([]);
  });

  it('HMAC and signing keys: a MAC or signature of one copy verifies with the other', async () => {
    const mac = (await east.send(new CreateKeyCommand({ MultiRegion: true, KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!;
    const sig = (await east.send(new CreateKeyCommand({ MultiRegion: true, KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!;
    for (const k of [mac, sig]) await east.send(new ReplicateKeyCommand({ KeyId: k.KeyId, ReplicaRegion: 'eu-west-1' }));
    const message = Buffer.from('message');
    const m = await west.send(new GenerateMacCommand({ KeyId: mac.KeyId, Message: message, MacAlgorithm: 'HMAC_SHA_256' }));
    expect((await east.send(new VerifyMacCommand({ KeyId: mac.KeyId, Message: message, MacAlgorithm: 'HMAC_SHA_256', Mac: m.Mac }))).MacValid).toBe(true);
    const sg = await east.send(new SignCommand({ KeyId: sig.KeyId, Message: message, SigningAlgorithm: 'ECDSA_SHA_256' }));
    const v = await west.send(new VerifyCommand({ KeyId: sig.KeyId, Message: message, SigningAlgorithm: 'ECDSA_SHA_256', Signature: sg.Signature }));
    expect(v.SignatureValid).toBe(true);
  });

  it('imported material: the replica waits for the same material', async () => {
    const k = (await east.send(new CreateKeyCommand({ MultiRegion: true, Origin: 'EXTERNAL' }))).KeyMetadata!;
    expect(k.KeyId).toMatch(/^mrk-/);
    const material = randomBytes(32);
    const importInto = async (c: KMSClient, m: Buffer) => {
      const p = await c.send(new GetParametersForImportCommand({ KeyId: k.KeyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }));
      return c.send(new ImportKeyMaterialCommand({
        KeyId: k.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapOaep(p.PublicKey!, m, 'sha1'), ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
      }));
    };
    const first = await importInto(east, material);
    const r = await east.send(new ReplicateKeyCommand({ KeyId: k.KeyId, ReplicaRegion: 'eu-west-1' }));
    expect(r.ReplicaKeyMetadata?.KeyState).toBe('PendingImport');
    expect((await failure(importInto(west, randomBytes(32)))).name).toBe('IncorrectKeyMaterialException');
    const second = await importInto(west, material);
    expect(second.KeyMaterialId).toBe(first.KeyMaterialId);
    expect((await west.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata?.KeyState).toBe('Enabled');
    importedBlob = (await west.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: importedBlob }))).Plaintext!)).toEqual(plaintext);
  });

  it('a restart keeps every region\'s keys and the token objects they share', async () => {
    h = await restart(h, clock);
    clients();
    expect(h.daemon.reconciled.orphansDestroyed).toBe(0);
    for (const c of [east, west]) expect(Buffer.from((await c.send(new DecryptCommand({ CiphertextBlob: importedBlob }))).Plaintext!)).toEqual(plaintext);
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: eastBlob, EncryptionContext: { a: 'b' } }))).Plaintext!)).toEqual(plaintext);
  });
});
