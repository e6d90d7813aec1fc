/**
 * AWS's key-state table, checked through the SDK: for each key state, which operations succeed
 * and which fail with which error (DisabledException, KMSInvalidStateException, or the
 * UnsupportedOperationException AWS gives for imported keys in every state).
 */
import {
  CancelKeyDeletionCommand, CreateAliasCommand, CreateKeyCommand, DescribeKeyCommand, DisableKeyCommand,
  EnableKeyCommand, EnableKeyRotationCommand, EncryptCommand, GenerateDataKeyCommand, GetKeyRotationStatusCommand,
  KMSClient, ListKeyRotationsCommand, ListResourceTagsCommand, RotateKeyOnDemandCommand, ScheduleKeyDeletionCommand,
  TagResourceCommand, UpdateKeyDescriptionCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/daemon.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

type State = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'PendingImport';
const STATES: State[] = ['Enabled', 'Disabled', 'PendingDeletion', 'PendingImport'];
const OK = 'ok';
const DIS = 'DisabledException';
const INV = 'KMSInvalidStateException';
const UNS = 'UnsupportedOperationException';

/** Expected outcome per state, in the order of STATES. */
const TABLE: [string, (kms: KMSClient, keyId: string) => Promise<unknown>, [string, string, string, string]][] = [
  ['Encrypt', (k, id) => k.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from('x') })), [OK, DIS, INV, INV]],
  ['GenerateDataKey', (k, id) => k.send(new GenerateDataKeyCommand({ KeyId: id, KeySpec: 'AES_256' })), [OK, DIS, INV, INV]],
  ['EnableKey', (k, id) => k.send(new EnableKeyCommand({ KeyId: id })), [OK, OK, INV, INV]],
  ['DisableKey', (k, id) => k.send(new DisableKeyCommand({ KeyId: id })), [OK, OK, INV, INV]],
  ['UpdateKeyDescription', (k, id) => k.send(new UpdateKeyDescriptionCommand({ KeyId: id, Description: 'd' })), [OK, OK, INV, OK]],
  ['TagResource', (k, id) => k.send(new TagResourceCommand({ KeyId: id, Tags: [{ TagKey: 'k', TagValue: 'v' }] })), [OK, OK, INV, OK]],
  ['CreateAlias', (k, id) => k.send(new CreateAliasCommand({ AliasName: `alias/s-${id}`, TargetKeyId: id })), [OK, OK, INV, OK]],
  ['ScheduleKeyDeletion', (k, id) => k.send(new ScheduleKeyDeletionCommand({ KeyId: id })), [OK, OK, INV, OK]],
  ['CancelKeyDeletion', (k, id) => k.send(new CancelKeyDeletionCommand({ KeyId: id })), [INV, INV, OK, INV]],
  ['DescribeKey', (k, id) => k.send(new DescribeKeyCommand({ KeyId: id })), [OK, OK, OK, OK]],
  ['ListResourceTags', (k, id) => k.send(new ListResourceTagsCommand({ KeyId: id })), [OK, OK, OK, OK]],
  ['EnableKeyRotation', (k, id) => k.send(new EnableKeyRotationCommand({ KeyId: id })), [OK, DIS, INV, UNS]],
  ['RotateKeyOnDemand', (k, id) => k.send(new RotateKeyOnDemandCommand({ KeyId: id })), [OK, DIS, INV, INV]],
  ['GetKeyRotationStatus', (k, id) => k.send(new GetKeyRotationStatusCommand({ KeyId: id })), [OK, OK, OK, OK]],
  ['ListKeyRotations', (k, id) => k.send(new ListKeyRotationsCommand({ KeyId: id })), [OK, OK, OK, OK]],
];

async function keyIn(state: State): Promise<{ id: string; arn: string }> {
  const origin = state === 'PendingImport' ? 'EXTERNAL' : 'AWS_KMS';
  const m = (await h.kms.send(new CreateKeyCommand({ Origin: origin }))).KeyMetadata!;
  if (state === 'Disabled') await h.kms.send(new DisableKeyCommand({ KeyId: m.KeyId }));
  if (state === 'PendingDeletion') await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: m.KeyId }));
  return { id: m.KeyId!, arn: m.Arn! };
}

describe('key-state table', () => {
  for (const [op, call, expected] of TABLE) {
    it(`${op}: ${STATES.map((s, i) => `${s} → ${expected[i]}`).join(', ')}`, async () => {
      for (const [i, state] of STATES.entries()) {
        const key = await keyIn(state);
        const outcome = await call(h.kms, key.id).then(
          () => ({ name: OK, message: '' }),
          (e: Error) => e,
        );
        expect({ state, outcome: outcome.name }).toEqual({ state, outcome: expected[i] });
        if (outcome.name === DIS) expect(outcome.message).toBe(`${key.arn} is disabled.`);
        if (outcome.name === INV) {
          const why = op === 'CancelKeyDeletion' ? 'is not pending deletion' : state === 'PendingImport' ? 'is pending import' : 'is pending deletion';
          expect(outcome.message).toBe(`${key.arn} ${why}.`);
        }
        // A refused call changes nothing.
        if (outcome.name !== OK) {
          const after = (await h.kms.send(new DescribeKeyCommand({ KeyId: key.id }))).KeyMetadata!;
          expect(after.KeyState).toBe(state);
        }
      }
    });
  }

  it('a cancelled deletion leaves a key without imported material in PendingImport', async () => {
    const key = await keyIn('PendingImport');
    await h.kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.id }));
    await h.kms.send(new CancelKeyDeletionCommand({ KeyId: key.id }));
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: key.id }))).KeyMetadata!.KeyState).toBe('PendingImport');
  });
});
