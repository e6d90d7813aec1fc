/**
 * GetKeyLastUsage through the AWS SDK: AWS's shapes (KeyLastUsage with Operation, Timestamp,
 * CloudTrailEventId = the audit event's id, KmsRequestId; TrackingStartDate; KeyCreationDate),
 * key id or ARN only, never-used keys, both keys of a ReEncrypt, failures not counted, and the
 * record surviving a restart (flushed at shutdown, not written per request).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CreateAliasCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand, EncryptCommand, GenerateMacCommand,
  GetKeyLastUsageCommand, ReEncryptCommand, SignCommand, VerifyCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findUnusedKeys } from '../../src/kms/key-usage.js';
import { ACCOUNT, failure, ManualClock, REGION, startHarness, type Harness } from '../helpers/daemon.js';
import { advance, DAY, restart } from '../helpers/lifecycle.js';

const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ clock });
  advance(h, clock, 0);
});
afterAll(async () => {
  await h?.stop();
});

const lastUsage = (KeyId: string) => h.kms.send(new GetKeyLastUsageCommand({ KeyId }));
const newKey = async (input: ConstructorParameters<typeof CreateKeyCommand>[0] = {}) =>
  (await h.kms.send(new CreateKeyCommand(input))).KeyMetadata!;

/** The audit trail's events, newest last. */
function auditEvents(): Array<{ eventID: string; eventName: string; requestID: string }> {
  const file = join(h.config.audit.dir, h.daemon.audit!.status().file!);
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

describe('GetKeyLastUsage', () => {
  it('a key never used says so: KeyLastUsage is empty, tracking starts at creation', async () => {
    const k = await newKey();
    const u = await lastUsage(k.KeyId!);
    expect(u.KeyId).toBe(k.KeyId);
    expect(u.KeyLastUsage).toEqual({});
    expect(u.KeyCreationDate?.getTime()).toBe(k.CreationDate?.getTime());
    expect(u.TrackingStartDate!.getTime()).toBeGreaterThanOrEqual(u.KeyCreationDate!.getTime());
  });

  it('reports the last successful cryptographic call with its audit event id and request id', async () => {
    const k = await newKey();
    advance(h, clock, 60_000);
    const enc = await h.kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x') }));
    const encAt = clock.now().getTime();
    const u = await lastUsage(k.Arn!);
    expect(u.KeyLastUsage?.Operation).toBe('Encrypt');
    expect(Math.abs(u.KeyLastUsage!.Timestamp!.getTime() - encAt)).toBeLessThan(1000);
    expect(u.KeyLastUsage?.KmsRequestId).toBe(enc.$metadata.requestId);
    const event = auditEvents().find((e) => e.requestID === enc.$metadata.requestId)!;
    expect(event.eventName).toBe('Encrypt');
    expect(u.KeyLastUsage?.CloudTrailEventId).toBe(event.eventID);

    // A failed call does not count; a later success replaces the record.
    advance(h, clock, 60_000);
    await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: Buffer.from(enc.CiphertextBlob!).fill(1, 40, 50) })));
    expect((await lastUsage(k.KeyId!)).KeyLastUsage?.Operation).toBe('Encrypt');
    await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect((await lastUsage(k.KeyId!)).KeyLastUsage?.Operation).toBe('Decrypt');
    // Reading metadata is not a cryptographic use.
    await h.kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }));
    expect((await lastUsage(k.KeyId!)).KeyLastUsage?.Operation).toBe('Decrypt');
  });

  it('ReEncrypt counts for both keys; Sign, Verify and GenerateMac are tracked', async () => {
    const a = await newKey();
    const b = await newKey();
    const enc = await h.kms.send(new EncryptCommand({ KeyId: a.KeyId, Plaintext: Buffer.from('x') }));
    await h.kms.send(new ReEncryptCommand({ CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: b.KeyId }));
    expect((await lastUsage(a.KeyId!)).KeyLastUsage?.Operation).toBe('ReEncrypt');
    expect((await lastUsage(b.KeyId!)).KeyLastUsage?.Operation).toBe('ReEncrypt');
    const s = await newKey({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' });
    const sig = await h.kms.send(new SignCommand({ KeyId: s.KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' }));
    expect((await lastUsage(s.KeyId!)).KeyLastUsage?.Operation).toBe('Sign');
    await h.kms.send(new VerifyCommand({ KeyId: s.KeyId, Message: Buffer.from('m'), Signature: sig.Signature, SigningAlgorithm: 'ECDSA_SHA_256' }));
    expect((await lastUsage(s.KeyId!)).KeyLastUsage?.Operation).toBe('Verify');
    const m = await newKey({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' });
    await h.kms.send(new GenerateMacCommand({ KeyId: m.KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_256' }));
    expect((await lastUsage(m.KeyId!)).KeyLastUsage?.Operation).toBe('GenerateMac');
  });

  it('takes a key id or key ARN only: aliases and unknown keys are NotFoundException', async () => {
    const k = await newKey();
    await h.kms.send(new CreateAliasCommand({ AliasName: 'alias/last-usage', TargetKeyId: k.KeyId }));
    for (const KeyId of ['alias/last-usage', `arn:aws:kms:${REGION}:${ACCOUNT}:alias/last-usage`, '00000000-0000-4000-8000-000000000000']) {
      const e = await failure(lastUsage(KeyId));
      expect(e.name, KeyId).toBe('NotFoundException');
    }
  });

  it('survives a restart, and the operator report finds keys unused for N days', async () => {
    const used = await newKey();
    const idle = await newKey();
    const enc = await h.kms.send(new EncryptCommand({ KeyId: used.KeyId, Plaintext: Buffer.from('x') }));
    h = await restart(h, clock);
    const u = await lastUsage(used.KeyId!);
    expect(u.KeyLastUsage?.KmsRequestId).toBe(enc.$metadata.requestId);
    expect((await lastUsage(idle.KeyId!)).KeyLastUsage).toEqual({});

    advance(h, clock, 40 * DAY);
    await h.kms.send(new EncryptCommand({ KeyId: used.KeyId, Plaintext: Buffer.from('x') }));
    const unused = findUnusedKeys(h.daemon.deps, ACCOUNT, 30).map((k) => k.keyId);
    expect(unused).toContain(idle.KeyId);
    expect(unused).not.toContain(used.KeyId);
  });
});
