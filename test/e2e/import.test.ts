import {
  CreateKeyCommand, DecryptCommand, DeleteImportedKeyMaterialCommand, DescribeKeyCommand, DisableKeyRotationCommand,
  EnableKeyCommand, EnableKeyRotationCommand, EncryptCommand, GetKeyRotationStatusCommand, GetParametersForImportCommand,
  ImportKeyMaterialCommand, ListKeyRotationsCommand, RotateKeyOnDemandCommand, ScheduleKeyDeletionCommand,
  type AlgorithmSpec, type ImportKeyMaterialCommandInput, type WrappingKeySpec,
} from '@aws-sdk/client-kms';
import { createPublicKey, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, ManualClock, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { advance, DAY, openLocally, syncClock, versionOf, wrapOaep, wrapRsaAes } from '../helpers/lifecycle.js';

const clock = new ManualClock(Date.parse('2032-03-01T08:00:00Z'));
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ clock });
  syncClock(h, clock);
});
afterAll(async () => {
  await h?.stop();
});

const externalKey = async () => (await h.kms.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!;
const meta = async (KeyId: string) => (await h.kms.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!;
const params = (KeyId: string, WrappingAlgorithm: AlgorithmSpec = 'RSAES_OAEP_SHA_1', WrappingKeySpec: WrappingKeySpec = 'RSA_2048') =>
  h.kms.send(new GetParametersForImportCommand({ KeyId, WrappingAlgorithm, WrappingKeySpec }));
const forever = { ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' } as const;

/** GetParametersForImport, wrap outside the daemon with node:crypto, ImportKeyMaterial. */
async function importMaterial(
  KeyId: string, material: Buffer, extra: Partial<ImportKeyMaterialCommandInput> = forever,
  WrappingAlgorithm: AlgorithmSpec = 'RSAES_OAEP_SHA_1', WrappingKeySpec: WrappingKeySpec = 'RSA_2048',
) {
  const p = await params(KeyId, WrappingAlgorithm, WrappingKeySpec);
  const hash = WrappingAlgorithm.endsWith('SHA_256') ? 'sha256' : 'sha1';
  const wrapped = WrappingAlgorithm.startsWith('RSA_AES') ? wrapRsaAes(p.PublicKey!, material, hash) : wrapOaep(p.PublicKey!, material, hash);
  return h.kms.send(new ImportKeyMaterialCommand({ KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped, ...extra }));
}
const encrypt = (KeyId: string, text: string) => h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from(text) }));
const decryptText = async (blob: Uint8Array) =>
  Buffer.from((await h.kms.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!).toString();
const objectsOf = (keyId: string) => inspectToken(h.token).filter((o) => o.label.startsWith(`p11kms:${keyId}:`));

describe('imported key material (Origin EXTERNAL)', () => {
  it('CreateKey with Origin EXTERNAL waits in PendingImport without material', async () => {
    const key = await externalKey();
    expect(key).toMatchObject({ Origin: 'EXTERNAL', KeyState: 'PendingImport', Enabled: false, KeySpec: 'SYMMETRIC_DEFAULT' });
    expect(key.CurrentKeyMaterialId).toBeUndefined();
    expect(key.ExpirationModel).toBeUndefined();
    for (const call of [encrypt(key.KeyId!, 'x'), h.kms.send(new EnableKeyCommand({ KeyId: key.KeyId }))]) {
      const e = await failure(call);
      expect(e.name).toBe('KMSInvalidStateException');
      expect(e.message).toBe(`${key.Arn} is pending import.`);
    }
    expect(objectsOf(key.KeyId!)).toEqual([]);
    // Nothing to delete yet: success with no effect.
    expect(await h.kms.send(new DeleteImportedKeyMaterialCommand({ KeyId: key.KeyId }))).toMatchObject({ KeyId: key.Arn });
  });

  it('round-trips material wrapped by node:crypto (RSAES_OAEP_SHA_1); the token object holds exactly that material', async () => {
    const key = await externalKey();
    const material = randomBytes(32);
    const p = await params(key.KeyId!);
    expect(p.KeyId).toBe(key.Arn);
    expect(p.ParametersValidTo).toEqual(new Date(clock.now().getTime() + DAY));
    const pub = createPublicKey({ key: Buffer.from(p.PublicKey!), format: 'der', type: 'spki' });
    expect(pub.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const imported = await h.kms.send(new ImportKeyMaterialCommand({
      KeyId: key.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapOaep(p.PublicKey!, material, 'sha1'), ...forever,
    }));
    expect(imported.KeyId).toBe(key.Arn);
    expect(imported.KeyMaterialId).toMatch(/^[0-9a-f]{64}$/);
    expect(await meta(key.KeyId!)).toMatchObject({
      KeyState: 'Enabled', Enabled: true, Origin: 'EXTERNAL', ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
      CurrentKeyMaterialId: imported.KeyMaterialId,
    });

    const enc = await encrypt(key.KeyId!, 'bring your own key');
    expect(await decryptText(enc.CiphertextBlob!)).toBe('bring your own key');
    expect(openLocally(material, enc.CiphertextBlob!).toString()).toBe('bring your own key');

    const [obj] = objectsOf(key.KeyId!);
    expect(obj).toMatchObject({ label: `p11kms:${key.KeyId}:v1`, token: true, priv: true, sensitive: true, extractable: false });
    expect(obj!.valueRead).toBe('CKR_ATTRIBUTE_SENSITIVE');
    expect(obj!.wrapped).not.toBe('WRAPPED');
    // The wrapping private key is in the token too, and just as unreadable.
    const wrapping = inspectToken(h.token, `p11kms-import:${key.KeyId}`);
    expect(wrapping.length).toBeGreaterThanOrEqual(1);
    for (const w of wrapping) {
      expect(w).toMatchObject({ sensitive: true, extractable: false });
      expect(w.valueRead).toBe('CKR_ATTRIBUTE_SENSITIVE');
    }
  });

  it('deleting material makes the key PendingImport; the same material restores old ciphertexts, other material is refused', async () => {
    const key = await externalKey();
    const material = randomBytes(32);
    const first = await importMaterial(key.KeyId!, material);
    const enc = await encrypt(key.KeyId!, 'keep me');

    const del = await h.kms.send(new DeleteImportedKeyMaterialCommand({ KeyId: key.KeyId }));
    expect(del).toMatchObject({ KeyId: key.Arn, KeyMaterialId: first.KeyMaterialId });
    expect(await meta(key.KeyId!)).toMatchObject({ KeyState: 'PendingImport', CurrentKeyMaterialId: first.KeyMaterialId });
    expect(objectsOf(key.KeyId!)).toEqual([]);
    const refused = await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })));
    expect(refused.name).toBe('KMSInvalidStateException');

    const wrong = await failure(importMaterial(key.KeyId!, randomBytes(32)));
    expect(wrong.name).toBe('IncorrectKeyMaterialException');
    expect(wrong.message).not.toMatch(/[0-9a-f]{64}/);
    expect((await meta(key.KeyId!)).KeyState).toBe('PendingImport');
    expect(objectsOf(key.KeyId!)).toEqual([]);

    // Same material, another wrapping key size: access to old ciphertexts is back.
    const again = await importMaterial(key.KeyId!, material, forever, 'RSAES_OAEP_SHA_1', 'RSA_3072');
    expect(again.KeyMaterialId).toBe(first.KeyMaterialId);
    expect((await meta(key.KeyId!)).KeyState).toBe('Enabled');
    expect(await decryptText(enc.CiphertextBlob!)).toBe('keep me');
    expect(objectsOf(key.KeyId!)).toHaveLength(1);
  });

  it('ValidTo: the material is destroyed when it passes and the key returns to PendingImport', async () => {
    const key = await externalKey();
    const material = randomBytes(32);
    const validTo = new Date(clock.now().getTime() + 2 * DAY);
    await importMaterial(key.KeyId!, material, { ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo: validTo });
    expect(await meta(key.KeyId!)).toMatchObject({ KeyState: 'Enabled', ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo: validTo });
    const enc = await encrypt(key.KeyId!, 'short-lived');

    advance(h, clock, DAY);
    await h.daemon.scheduler.runOnce();
    expect((await meta(key.KeyId!)).KeyState).toBe('Enabled');
    expect(objectsOf(key.KeyId!)).toHaveLength(1);

    advance(h, clock, DAY);
    const report = await h.daemon.scheduler.runOnce();
    expect(report.materialsExpired).toBe(1);
    expect((await meta(key.KeyId!)).KeyState).toBe('PendingImport');
    expect(objectsOf(key.KeyId!)).toEqual([]);

    await importMaterial(key.KeyId!, material); // re-import, now without expiry
    expect(await meta(key.KeyId!)).toMatchObject({ KeyState: 'Enabled', ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' });
    expect(await decryptText(enc.CiphertextBlob!)).toBe('short-lived');
  });

  it('rejects bad expiration parameters with ValidationException and imports nothing', async () => {
    const key = await externalKey();
    const now = clock.now().getTime();
    const p = await params(key.KeyId!);
    const EncryptedKeyMaterial = wrapOaep(p.PublicKey!, randomBytes(32), 'sha1');
    for (const extra of [
      {},
      { ExpirationModel: 'KEY_MATERIAL_EXPIRES' as const },
      { ExpirationModel: 'KEY_MATERIAL_EXPIRES' as const, ValidTo: new Date(now - 1000) },
      { ExpirationModel: 'KEY_MATERIAL_EXPIRES' as const, ValidTo: new Date(now + 366 * DAY) },
      { ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' as const, ValidTo: new Date(now + DAY) },
      { ...forever, ImportType: 'NEW_KEY_MATERIAL' as const, KeyMaterialId: 'a'.repeat(64) },
    ]) {
      const e = await failure(h.kms.send(new ImportKeyMaterialCommand({
        KeyId: key.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial, ...extra,
      })));
      expect(e.name).toBe('ValidationException');
    }
    expect((await meta(key.KeyId!)).KeyState).toBe('PendingImport');
    expect(objectsOf(key.KeyId!)).toEqual([]);
  });

  it('import tokens: expired after 24 hours, bound to their key, and tied to their wrapping algorithm', async () => {
    const a = await externalKey();
    const b = await externalKey();
    const material = randomBytes(32);
    const p = await params(a.KeyId!);
    const wrapped = wrapOaep(p.PublicKey!, material, 'sha1');

    const foreign = await failure(h.kms.send(new ImportKeyMaterialCommand({
      KeyId: b.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped, ...forever,
    })));
    expect(foreign.name).toBe('InvalidImportTokenException');
    const garbage = await failure(h.kms.send(new ImportKeyMaterialCommand({
      KeyId: a.KeyId, ImportToken: randomBytes(41), EncryptedKeyMaterial: wrapped, ...forever,
    })));
    expect(garbage.name).toBe('InvalidImportTokenException');
    const wrongHash = await failure(h.kms.send(new ImportKeyMaterialCommand({
      KeyId: a.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapOaep(p.PublicKey!, material, 'sha256'), ...forever,
    })));
    expect(wrongHash.name).toBe('InvalidCiphertextException');
    const short = await failure(h.kms.send(new ImportKeyMaterialCommand({
      KeyId: a.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped.subarray(1), ...forever,
    })));
    expect(short.name).toBe('InvalidCiphertextException');
    expect((await meta(a.KeyId!)).KeyState).toBe('PendingImport');

    advance(h, clock, DAY + 1000);
    const expired = () => h.kms.send(new ImportKeyMaterialCommand({
      KeyId: a.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped, ...forever,
    }));
    expect((await failure(expired())).name).toBe('ExpiredImportTokenException');
    // The scheduler destroys the expired wrapping key; the token still reads as expired.
    await h.daemon.scheduler.runOnce();
    expect(inspectToken(h.token, `p11kms-import:${a.KeyId}`)).toEqual([]);
    expect((await failure(expired())).name).toBe('ExpiredImportTokenException');
    expect((await meta(a.KeyId!)).KeyState).toBe('PendingImport');
  });

  it('RSA_AES_KEY_WRAP_SHA_1 with RSA_4096 works in the token; a 128-bit key is IncorrectKeyMaterialException', async () => {
    const key = await externalKey();
    const material = randomBytes(32);
    await importMaterial(key.KeyId!, material, forever, 'RSA_AES_KEY_WRAP_SHA_1', 'RSA_4096');
    const enc = await encrypt(key.KeyId!, 'two-step wrap');
    expect(openLocally(material, enc.CiphertextBlob!).toString()).toBe('two-step wrap');

    const other = await externalKey();
    const e = await failure(importMaterial(other.KeyId!, randomBytes(16), forever, 'RSA_AES_KEY_WRAP_SHA_1', 'RSA_2048'));
    expect(e.name).toBe('IncorrectKeyMaterialException');
    expect((await meta(other.KeyId!)).KeyState).toBe('PendingImport');
  });

  it('SHA-256 wrapping: works where the token can do OAEP with SHA-256, otherwise a clear UnsupportedOperationException', async () => {
    const key = await externalKey();
    for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const) {
      const material = randomBytes(32);
      const result = await importMaterial(key.KeyId!, material, forever, algorithm).then(
        () => 'imported',
        (e: Error) => e,
      );
      if (typeof result === 'string') {
        const enc = await encrypt(key.KeyId!, algorithm);
        expect(openLocally(material, enc.CiphertextBlob!).toString()).toBe(algorithm);
        await h.kms.send(new DeleteImportedKeyMaterialCommand({ KeyId: key.KeyId }));
      } else {
        // SoftHSM 2.6.1 accepts CKM_RSA_PKCS_OAEP only with SHA-1.
        expect(result.name).toBe('UnsupportedOperationException');
        expect(result.message).toContain('CKM_RSA_PKCS_OAEP with SHA-256');
      }
    }
    for (const [alg, spec] of [['RSAES_PKCS1_V1_5', 'RSA_2048'], ['SM2PKE', 'SM2']] as const) {
      expect((await failure(params(key.KeyId!, alg, spec))).name).toBe('UnsupportedOperationException');
    }
  });

  it('keys with KMS-generated material refuse the import operations; imported keys refuse automatic rotation', async () => {
    const generated = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    for (const call of [
      params(generated.KeyId!),
      h.kms.send(new DeleteImportedKeyMaterialCommand({ KeyId: generated.KeyId })),
      h.kms.send(new ImportKeyMaterialCommand({
        KeyId: generated.KeyId, ImportToken: randomBytes(41), EncryptedKeyMaterial: randomBytes(256), ...forever,
      })),
    ]) {
      const e = await failure(call);
      expect(e.name).toBe('UnsupportedOperationException');
      expect(e.message).toBe(`${generated.Arn} origin is AWS_KMS which is not valid for this operation.`);
    }
    const key = await externalKey();
    await importMaterial(key.KeyId!, randomBytes(32));
    for (const call of [
      h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId })),
      h.kms.send(new DisableKeyRotationCommand({ KeyId: key.KeyId })),
    ]) {
      expect((await failure(call)).name).toBe('UnsupportedOperationException');
    }
    expect((await h.kms.send(new GetKeyRotationStatusCommand({ KeyId: key.KeyId }))).KeyRotationEnabled).toBe(false);
  });

  it('on-demand rotation into newly imported material (ImportType NEW_KEY_MATERIAL)', async () => {
    const key = await externalKey();
    const m1 = randomBytes(32);
    const m2 = randomBytes(32);
    const first = await importMaterial(key.KeyId!, m1);
    const old = await encrypt(key.KeyId!, 'under m1');
    const noPending = await failure(h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId })));
    expect(noPending.name).toBe('KMSInvalidStateException');

    const second = await importMaterial(key.KeyId!, m2, { ...forever, ImportType: 'NEW_KEY_MATERIAL' });
    expect(second.KeyMaterialId).not.toBe(first.KeyMaterialId);
    const all = (await h.kms.send(new ListKeyRotationsCommand({ KeyId: key.KeyId, IncludeKeyMaterial: 'ALL_KEY_MATERIAL' }))).Rotations!;
    expect(all.map((r) => [r.KeyMaterialId, r.KeyMaterialState, r.ImportState])).toEqual([
      [first.KeyMaterialId, 'CURRENT', 'IMPORTED'],
      [second.KeyMaterialId, 'PENDING_ROTATION', 'IMPORTED'],
    ]);
    // Still encrypting under m1 until the rotation.
    expect(openLocally(m1, (await encrypt(key.KeyId!, 'still m1')).CiphertextBlob!).toString()).toBe('still m1');

    await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: key.KeyId }));
    const enc = await encrypt(key.KeyId!, 'under m2');
    expect(versionOf(enc.CiphertextBlob!)).toBe(2);
    expect(openLocally(m2, enc.CiphertextBlob!).toString()).toBe('under m2');
    expect(await decryptText(old.CiphertextBlob!)).toBe('under m1');
    const rotations = (await h.kms.send(new ListKeyRotationsCommand({ KeyId: key.KeyId }))).Rotations!;
    expect(rotations).toHaveLength(1);
    expect(rotations[0]).toMatchObject({ KeyMaterialId: second.KeyMaterialId, RotationType: 'ON_DEMAND', KeyMaterialState: 'CURRENT' });
    expect((await meta(key.KeyId!)).CurrentKeyMaterialId).toBe(second.KeyMaterialId);
  });

  it('deleting an imported key destroys its material and its wrapping keys', async () => {
    const key = await externalKey();
    await importMaterial(key.KeyId!, randomBytes(32));
    await params(key.KeyId!); // an outstanding import token
    expect(objectsOf(key.KeyId!)).toHaveLength(1);
    expect(inspectToken(h.token, `p11kms-import:${key.KeyId}`)).toHaveLength(2);
    await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays: 7 }));
    advance(h, clock, 7 * DAY + 1);
    await h.daemon.scheduler.runOnce();
    expect(objectsOf(key.KeyId!)).toEqual([]);
    expect(inspectToken(h.token, `p11kms-import:${key.KeyId}`)).toEqual([]);
    expect((await failure(meta(key.KeyId!))).name).toBe('NotFoundException');
  });
});
