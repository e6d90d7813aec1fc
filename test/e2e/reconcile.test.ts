import { CreateKeyCommand, DescribeKeyCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/daemon.js';
import { keyArn } from '../../src/kms/arn.js';
import { LABEL_PREFIX, newMaterial, objectIdFor } from '../../src/kms/material.js';
import { silentLogger } from '../../src/log.js';
import type { KeyRecord } from '../../src/store/types.js';
import { ACCOUNT, client, failure, REGION, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';

let h: Harness;
afterAll(async () => {
  await h?.stop();
});

function pendingKey(): KeyRecord {
  const keyId = randomUUID();
  return {
    keyId, arn: keyArn(REGION, ACCOUNT, keyId), accountId: ACCOUNT, region: REGION, createdAt: Date.now(),
    description: '', keyUsage: 'ENCRYPT_DECRYPT', keySpec: 'SYMMETRIC_DEFAULT', origin: 'AWS_KMS',
    keyManager: 'CUSTOMER', state: 'Creating', policy: '{}', currentVersion: 1,
  };
}

describe('start-up reconciliation', () => {
  it('resolves every crash window of CreateKey: no orphan object, no row pointing at nothing', async () => {
    h = await startHarness();
    const survivor = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const { store, token } = h.daemon.deps;

    // Crash after the row was written but before the token object existed.
    const beforeObject = pendingKey();
    store.createKeyPending(beforeObject, newMaterial(beforeObject.keyId, 1, Date.now()), []);
    // Crash after the token object was created but before the row was marked active.
    const afterObject = pendingKey();
    const m = newMaterial(afterObject.keyId, 1, Date.now());
    store.createKeyPending(afterObject, m, []);
    await token.generateAesKey(m.objectId, `${LABEL_PREFIX}${afterObject.keyId}:v1`);
    // A token object whose row never made it (e.g. the database was restored from an older backup).
    const orphanId = randomUUID();
    await token.generateAesKey(objectIdFor(orphanId, 1), `${LABEL_PREFIX}${orphanId}:v1`);

    expect(inspectToken(h.token).length).toBe(3);
    await h.daemon.stop();
    const daemon = await startDaemon(h.config, silentLogger);
    h = { ...h, daemon, kms: client(`http://127.0.0.1:${daemon.port}`) };
    expect(daemon.reconciled).toEqual({ pendingRemoved: 2, keysRemoved: 2, orphansDestroyed: 1, missingObjects: 0 });

    const left = inspectToken(h.token);
    expect(left.map((o) => o.label)).toEqual([`${LABEL_PREFIX}${survivor.KeyId}:v1`]);
    for (const gone of [beforeObject.keyId, afterObject.keyId]) {
      const e = await failure(h.kms.send(new DescribeKeyCommand({ KeyId: gone })));
      expect(e.name).toBe('NotFoundException');
    }
    const enc = await h.kms.send(new EncryptCommand({ KeyId: survivor.KeyId, Plaintext: Buffer.from('still here') }));
    expect(enc.KeyId).toBe(survivor.Arn);

    // A second start finds nothing to do.
    await h.daemon.stop();
    const third = await startDaemon(h.config, silentLogger);
    h = { ...h, daemon: third };
    expect(third.reconciled).toEqual({ pendingRemoved: 0, keysRemoved: 0, orphansDestroyed: 0, missingObjects: 0 });
  });
});
