import { CreateKeyCommand, DescribeKeyCommand, GenerateMacCommand, SignCommand, VerifyCommand } from '@aws-sdk/client-kms';
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

function pendingKey(keySpec: string, keyUsage: string): KeyRecord {
  const keyId = randomUUID();
  return {
    keyId, arn: keyArn(REGION, ACCOUNT, keyId), accountId: ACCOUNT, region: REGION, createdAt: Date.now(),
    description: '', keyUsage, keySpec, origin: 'AWS_KMS', keyManager: 'CUSTOMER', state: 'Creating', policy: '{}',
    currentVersion: 1,
  };
}

describe('start-up reconciliation with key pairs', () => {
  it('rolls back both halves of a pair from an unfinished CreateKey and destroys orphan pairs, counting each once', async () => {
    h = await startHarness();
    const signer = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!;
    const mac = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!;
    const { store, token } = h.daemon.deps;

    // Crash after the rows were written, before the pair existed.
    const beforePair = pendingKey('ECC_NIST_P384', 'SIGN_VERIFY');
    store.createKeyPending(beforePair, newMaterial(beforePair.keyId, 1, Date.now()), []);
    // Crash after the pair was generated, before the rows were marked active.
    const afterPair = pendingKey('ECC_NIST_P256', 'KEY_AGREEMENT');
    const m = newMaterial(afterPair.keyId, 1, Date.now());
    store.createKeyPending(afterPair, m, []);
    await token.generateKeyPair(m.objectId, `${LABEL_PREFIX}${afterPair.keyId}:v1`, { type: 'ec', curve: 'P-256' }, 'derive');
    // Token objects with no rows at all: a pair and an HMAC secret.
    const orphanPair = randomUUID();
    await token.generateKeyPair(objectIdFor(orphanPair, 1), `${LABEL_PREFIX}${orphanPair}:v1`, { type: 'ec', curve: 'secp256k1' }, 'sign');
    const orphanSecret = randomUUID();
    await token.generateHmacKey(objectIdFor(orphanSecret, 1), `${LABEL_PREFIX}${orphanSecret}:v1`, 32);

    expect(inspectToken(h.token).length).toBe(2 + 1 + 2 + 2 + 1);
    await h.daemon.stop();
    const daemon = await startDaemon(h.config, silentLogger);
    h = { ...h, daemon, kms: client(`http://127.0.0.1:${daemon.port}`) };
    expect(daemon.reconciled).toEqual({ pendingRemoved: 2, keysRemoved: 2, orphansDestroyed: 2, missingObjects: 0 });

    const left = inspectToken(h.token).map((o) => `${o.label} ${o.cls}`).sort();
    expect(left).toEqual(
      [`${LABEL_PREFIX}${signer.KeyId}:v1 private`, `${LABEL_PREFIX}${signer.KeyId}:v1 public`, `${LABEL_PREFIX}${mac.KeyId}:v1 secret`].sort(),
    );
    for (const gone of [beforePair.keyId, afterPair.keyId]) {
      expect((await failure(h.kms.send(new DescribeKeyCommand({ KeyId: gone })))).name).toBe('NotFoundException');
    }
    // The survivors work after the restart (handles and public-key caches are per daemon).
    const sig = await h.kms.send(new SignCommand({ KeyId: signer.KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' }));
    const ok = await h.kms.send(new VerifyCommand({ KeyId: signer.KeyId, Message: Buffer.from('m'), Signature: sig.Signature, SigningAlgorithm: 'ECDSA_SHA_256' }));
    expect(ok.SignatureValid).toBe(true);
    const tag = await h.kms.send(new GenerateMacCommand({ KeyId: mac.KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_256' }));
    expect(tag.Mac!.length).toBe(32);

    await h.daemon.stop();
    const third = await startDaemon(h.config, silentLogger);
    h = { ...h, daemon: third };
    expect(third.reconciled).toEqual({ pendingRemoved: 0, keysRemoved: 0, orphansDestroyed: 0, missingObjects: 0 });
  });
});
