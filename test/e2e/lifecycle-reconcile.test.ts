/**
 * Crash windows of the key lifecycle, resolved at start-up: a rotation or import that created
 * its token object but never activated its row, a GetParametersForImport that wrote its row or
 * its wrapping key but not both, and a removal of imported material whose row went first.
 */
import {
  CreateKeyCommand, DecryptCommand, DescribeKeyCommand, EncryptCommand, GetParametersForImportCommand, ImportKeyMaterialCommand,
  RotateKeyOnDemandCommand,
} from '@aws-sdk/client-kms';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMPORT_LABEL_PREFIX } from '../../src/kms/import.js';
import { LABEL_PREFIX, newMaterial, objectIdFor } from '../../src/kms/material.js';
import { ManualClock, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { restart, syncClock, versionOf, wrapOaep } from '../helpers/lifecycle.js';

const clock = new ManualClock(Date.parse('2033-01-01T00:00:00Z'));
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ clock });
  syncClock(h, clock);
});
afterAll(async () => {
  await h?.stop();
});

describe('start-up reconciliation of lifecycle crash windows', () => {
  it('rolls back unfinished rotations and imports, and removes orphan wrapping keys and material objects', async () => {
    const { store, token } = h.daemon.deps;
    const now = clock.now().getTime();

    // Rotation: object created, row still pending.
    const rotated = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const m2 = newMaterial(rotated.KeyId!, 2, now);
    store.addPendingMaterial(m2);
    await token.generateAesKey(m2.objectId, `${LABEL_PREFIX}${rotated.KeyId}:v2`);
    // Rotation: row pending, no object yet.
    const early = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    store.addPendingMaterial(newMaterial(early.KeyId!, 2, now));

    // Import: object unwrapped into the token, row still pending (the key stays, PendingImport).
    const importing = (await h.kms.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!;
    const mi = { ...newMaterial(importing.KeyId!, 1, now), objectId: objectIdFor(importing.KeyId!, 1) };
    store.addPendingMaterial(mi);
    await token.generateAesKey(mi.objectId, `${LABEL_PREFIX}${importing.KeyId}:v1`);

    // GetParametersForImport: a row whose key pair never made it, and a key pair whose row never did.
    const rowOnly = randomBytes(16);
    store.lifecycle.insertImportToken({
      tokenId: rowOnly, keyId: importing.KeyId!, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048',
      createdAt: now, expiresAt: now + 86_400_000,
    });
    await token.generateRsaWrappingKeyPair(randomBytes(16), `${IMPORT_LABEL_PREFIX}${importing.KeyId}`, 2048);

    // DeleteImportedKeyMaterial: rows changed, then the crash before the object was destroyed.
    const deleting = (await h.kms.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!;
    const material = randomBytes(32);
    const p = await h.kms.send(new GetParametersForImportCommand({
      KeyId: deleting.KeyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048',
    }));
    const encryptedMaterial = wrapOaep(p.PublicKey!, material, 'sha1');
    await h.kms.send(new ImportKeyMaterialCommand({
      KeyId: deleting.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: encryptedMaterial,
      ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    }));
    const enc = await h.kms.send(new EncryptCommand({ KeyId: deleting.KeyId, Plaintext: Buffer.from('survives') }));
    const info = store.lifecycle.getMaterialInfo(deleting.KeyId!, 1)!;
    store.transaction(() => {
      store.deleteMaterial(deleting.KeyId!, 1);
      store.lifecycle.putMaterialInfo({ ...info, importState: 'PENDING_IMPORT' });
      store.updateKey(deleting.KeyId!, { state: 'PendingImport' });
    });

    expect(inspectToken(h.token, IMPORT_LABEL_PREFIX)).toHaveLength(2); // the orphan pair's private key + the real one
    h = await restart(h, clock);
    expect(h.daemon.reconciled).toMatchObject({ pendingRemoved: 3, keysRemoved: 0, orphansDestroyed: 1, missingObjects: 0 });

    const labels = inspectToken(h.token).map((o) => o.label);
    expect(labels).toContain(`${LABEL_PREFIX}${rotated.KeyId}:v1`);
    expect(labels).not.toContain(`${LABEL_PREFIX}${rotated.KeyId}:v2`);
    expect(labels).not.toContain(`${LABEL_PREFIX}${importing.KeyId}:v1`);
    expect(labels).not.toContain(`${LABEL_PREFIX}${deleting.KeyId}:v1`);
    // Only the real import token's wrapping key is left; the row without a key pair is gone.
    expect(inspectToken(h.token, IMPORT_LABEL_PREFIX)).toHaveLength(1);
    expect(h.daemon.deps.store.lifecycle.getImportToken(rowOnly)).toBeUndefined();

    // Every key still works from where it was.
    const again = await h.kms.send(new EncryptCommand({ KeyId: rotated.KeyId, Plaintext: Buffer.from('v1') }));
    expect(versionOf(again.CiphertextBlob!)).toBe(1);
    await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: rotated.KeyId }));
    const v2 = await h.kms.send(new EncryptCommand({ KeyId: rotated.KeyId, Plaintext: Buffer.from('v2') }));
    expect(versionOf(v2.CiphertextBlob!)).toBe(2);
    await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: early.KeyId }));
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: importing.KeyId }))).KeyMetadata!.KeyState).toBe('PendingImport');

    const p2 = await h.kms.send(new GetParametersForImportCommand({
      KeyId: deleting.KeyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048',
    }));
    await h.kms.send(new ImportKeyMaterialCommand({
      KeyId: deleting.KeyId, ImportToken: p2.ImportToken, EncryptedKeyMaterial: wrapOaep(p2.PublicKey!, material, 'sha1'),
      ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    }));
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('survives');
  });
});
