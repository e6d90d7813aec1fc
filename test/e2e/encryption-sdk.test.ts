import { buildClient, CommitmentPolicy, KmsKeyringNode } from '@aws-crypto/client-node';
import { CreateKeyCommand, KMS } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, failure, REGION, startHarness, type Harness } from '../helpers/daemon.js';

let h: Harness;
/** The keyring calls methods (generateDataKey, decrypt), so it takes the aggregated client. */
let kms: KMS;
beforeAll(async () => {
  h = await startHarness();
  kms = new KMS({ endpoint: h.endpoint, region: REGION, credentials: ADMIN });
});
afterAll(async () => {
  await h?.stop();
});

describe('AWS Encryption SDK (KmsKeyringNode) against the daemon', () => {
  it('encrypts and decrypts a message with envelope encryption and an encryption context', async () => {
    const key = (await h.kms.send(new CreateKeyCommand({ Description: 'esdk' }))).KeyMetadata!;
    const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
    const keyring = new KmsKeyringNode({ generatorKeyId: key.Arn!, clientProvider: () => kms });
    const message = Buffer.alloc(100_000, 'payload ');
    const context = { tenant: 'acme', purpose: 'test' };
    const { result } = await encrypt(keyring, message, { encryptionContext: context });
    expect(result.includes(Buffer.from('payload payload'))).toBe(false);

    const { plaintext, messageHeader } = await decrypt(keyring, result);
    expect(plaintext.equals(message)).toBe(true);
    expect(messageHeader.encryptionContext).toMatchObject(context);
    expect(messageHeader.encryptedDataKeys[0]!.providerInfo).toBe(key.Arn);
  });

  it('refuses to decrypt with a keyring for another key', async () => {
    const a = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const b = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
    const { result } = await encrypt(new KmsKeyringNode({ generatorKeyId: a.Arn!, clientProvider: () => kms }), 'hi');
    const e = await failure(decrypt(new KmsKeyringNode({ generatorKeyId: b.Arn!, clientProvider: () => kms }), result));
    expect(e.message).toMatch(/unencryptedDataKey has not been set/);
  });
});
