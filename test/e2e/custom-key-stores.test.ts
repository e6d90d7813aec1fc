import {
  ConnectCustomKeyStoreCommand, CreateCustomKeyStoreCommand, CreateKeyCommand, DecryptCommand, DeleteCustomKeyStoreCommand,
  DescribeCustomKeyStoresCommand, DescribeKeyCommand, DisableKeyCommand, DisconnectCustomKeyStoreCommand, EnableKeyCommand,
  EnableKeyRotationCommand, EncryptCommand, GenerateDataKeyCommand, GenerateRandomCommand, ScheduleKeyDeletionCommand,
  UpdateCustomKeyStoreCommand, type KMSClient,
} from '@aws-sdk/client-kms';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, ManualClock, startHarness, storedBytes, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { advance, DAY, restart, syncClock } from '../helpers/lifecycle.js';
import { createPrincipal } from '../helpers/principals.js';
import { addToken, SOFTHSM_MODULE, type ExtraToken, type TempToken } from '../helpers/softhsm.js';

/**
 * Custom key stores (issue #6) against real SoftHSM2 tokens: the default token plus two store
 * tokens in the same SoftHSM2 token directory, as ./scripts/start sets them up.
 */

const ONE = 'cluster-teststoreone';
const TWO = 'cluster-teststoretwo';
const MISSING = 'cluster-missingtoken';
const ANCHORED = 'cluster-anchoredhsm';
const PEM = '-----BEGIN CERTIFICATE-----\nMIIBdGVzdCB0cnVzdCBhbmNob3I=\n-----END CERTIFICATE-----\n';

const clock = new ManualClock(Date.now());
let h: Harness;
let one: ExtraToken;
let two: ExtraToken;

beforeAll(async () => {
  h = await startHarness({
    clock,
    prepare: (t: TempToken) => {
      one = addToken(t, 'p11kms-store-1');
      two = addToken(t, 'p11kms-store-2');
      const anchor = join(t.dir, 'customerCA.crt');
      writeFileSync(anchor, PEM);
      return {
        P11KMS_HSMS: JSON.stringify({
          [ONE]: { module: SOFTHSM_MODULE, tokenLabel: one.label, maxSessions: 4 },
          [TWO]: { module: SOFTHSM_MODULE, tokenLabel: two.label, maxSessions: 4 },
          [MISSING]: { module: SOFTHSM_MODULE, tokenLabel: 'p11kms-nowhere' },
          [ANCHORED]: { module: SOFTHSM_MODULE, tokenLabel: 'p11kms-anchored', trustAnchorCertificate: { file: anchor } },
        }),
      };
    },
  });
  syncClock(h, clock);
});
afterAll(async () => {
  await h?.stop();
});

const kms = (): KMSClient => h.kms;
const describeStore = async (id: string) =>
  (await kms().send(new DescribeCustomKeyStoresCommand({ CustomKeyStoreId: id }))).CustomKeyStores![0]!;
const keyState = async (KeyId: string) => (await kms().send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!;
const asToken = (t: ExtraToken): TempToken => ({ ...h.token, label: t.label, userPin: t.userPin });

async function waitFor(id: string, states: string[], ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await describeStore(id);
    if (states.includes(s.ConnectionState!)) return s;
    if (Date.now() > deadline) throw new Error(`store ${id} is ${s.ConnectionState}, expected ${states.join('/')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const create = (name: string, cluster: string, password: string, extra: object = {}) =>
  kms().send(new CreateCustomKeyStoreCommand({ CustomKeyStoreName: name, CloudHsmClusterId: cluster, KeyStorePassword: password, ...extra }));

let storeOne: string;
let storeTwo: string;

describe('CreateCustomKeyStore and DescribeCustomKeyStores', () => {
  it('refuses what AWS refuses, with AWS error names; the password is never echoed', async () => {
    expect((await failure(kms().send(new CreateCustomKeyStoreCommand({ CustomKeyStoreName: 'x', CustomKeyStoreType: 'EXTERNAL_KEY_STORE' })))).name)
      .toBe('UnsupportedOperationException');
    expect((await failure(kms().send(new CreateCustomKeyStoreCommand({ CustomKeyStoreName: 'x', CloudHsmClusterId: ONE })))).name)
      .toBe('ValidationException');
    const short = await failure(create('x', ONE, 'abc123'));
    expect(short.name).toBe('ValidationException');
    expect(short.message).not.toContain('abc123');
    expect((await failure(create('x', 'cluster-nosuchcluster', one.userPin))).name).toBe('CloudHsmClusterNotFoundException');
    expect((await failure(create('x', ONE, one.userPin, { XksProxyUriPath: '/kms/xks/v1' }))).name).toBe('ValidationException');
    // An HSM with a configured trust anchor checks TrustAnchorCertificate.
    expect((await failure(create('anchored', ANCHORED, 'password1'))).name).toBe('ValidationException');
    expect((await failure(create('anchored', ANCHORED, 'password1', { TrustAnchorCertificate: PEM.replace('dGVz', 'eHh4') }))).name)
      .toBe('IncorrectTrustAnchorException');
    const anchored = (await create('anchored', ANCHORED, 'password1', { TrustAnchorCertificate: PEM.replaceAll('\n', '\r\n') })).CustomKeyStoreId!;
    expect((await describeStore(anchored)).TrustAnchorCertificate).toContain('BEGIN CERTIFICATE');
    await kms().send(new DeleteCustomKeyStoreCommand({ CustomKeyStoreId: anchored }));
  });

  it('creates a DISCONNECTED store; names and HSMs are unique; the PIN is stored only sealed', async () => {
    storeOne = (await create('store one', ONE, one.userPin, { CustomKeyStoreType: 'AWS_CLOUDHSM' })).CustomKeyStoreId!;
    expect(storeOne).toMatch(/^cks-[0-9a-f]{17}$/);
    const s = await describeStore(storeOne);
    expect(s).toMatchObject({
      CustomKeyStoreId: storeOne, CustomKeyStoreName: 'store one', CloudHsmClusterId: ONE, ConnectionState: 'DISCONNECTED',
      CustomKeyStoreType: 'AWS_CLOUDHSM',
    });
    expect(s.ConnectionErrorCode).toBeUndefined();
    expect(s.CreationDate).toBeInstanceOf(Date);
    expect((await failure(create('store one', TWO, two.userPin))).name).toBe('CustomKeyStoreNameInUseException');
    expect((await failure(create('another', ONE, one.userPin))).name).toBe('CloudHsmClusterInUseException');
    storeTwo = (await create('store two', TWO, two.userPin)).CustomKeyStoreId!;

    const bytes = storedBytes(h.config);
    expect(bytes.includes(Buffer.from(one.userPin))).toBe(false);
    expect(bytes.includes(Buffer.from(two.userPin))).toBe(false);
  });

  it('describes by id, by name and in pages; unknown ids and names, and bad markers, are refused', async () => {
    const byName = await kms().send(new DescribeCustomKeyStoresCommand({ CustomKeyStoreName: 'store two' }));
    expect(byName.CustomKeyStores!.map((c) => c.CustomKeyStoreId)).toEqual([storeTwo]);
    const all = await kms().send(new DescribeCustomKeyStoresCommand({}));
    expect(all.CustomKeyStores!.map((c) => c.CustomKeyStoreId).sort()).toEqual([storeOne, storeTwo].sort());
    const first = await kms().send(new DescribeCustomKeyStoresCommand({ Limit: 1 }));
    expect(first.Truncated).toBe(true);
    const second = await kms().send(new DescribeCustomKeyStoresCommand({ Limit: 1, Marker: first.NextMarker }));
    expect(second.Truncated).toBe(false);
    expect([...first.CustomKeyStores!, ...second.CustomKeyStores!].map((c) => c.CustomKeyStoreId).sort()).toEqual([storeOne, storeTwo].sort());
    expect((await failure(kms().send(new DescribeCustomKeyStoresCommand({ CustomKeyStoreId: 'cks-00000000000000000' })))).name)
      .toBe('CustomKeyStoreNotFoundException');
    expect((await failure(kms().send(new DescribeCustomKeyStoresCommand({ CustomKeyStoreName: 'nope' })))).name)
      .toBe('CustomKeyStoreNotFoundException');
    expect((await failure(kms().send(new DescribeCustomKeyStoresCommand({ Marker: 'not a marker!' })))).name).toBe('InvalidMarkerException');
  });

  it('is identity-level: a user needs kms:*CustomKeyStore* in an identity policy', async () => {
    const user = await createPrincipal(h, { type: 'user', name: 'cks-reader', identity: [{ Effect: 'Allow', Action: 'kms:DescribeCustomKeyStores', Resource: '*' }] });
    const c = user.kms; // the daemon's clock is still the real time here
    expect((await c.send(new DescribeCustomKeyStoresCommand({}))).CustomKeyStores!.length).toBe(2);
    const denied = await failure(c.send(new CreateCustomKeyStoreCommand({ CustomKeyStoreName: 'n', CloudHsmClusterId: MISSING, KeyStorePassword: 'password1' })));
    expect(denied.name).toBe('AccessDeniedException');
    expect(denied.message).toContain('kms:CreateCustomKeyStore');
    expect((await failure(c.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne })))).name).toBe('AccessDeniedException');
  });
});

describe('ConnectCustomKeyStore and keys in the store', () => {
  let inOne: string;
  let defaultKey: string;

  it('refuses keys and random bytes while the store is DISCONNECTED', async () => {
    const e = await failure(kms().send(new CreateKeyCommand({ CustomKeyStoreId: storeOne, Origin: 'AWS_CLOUDHSM' })));
    expect(e.name).toBe('CustomKeyStoreInvalidStateException');
    expect((await failure(kms().send(new GenerateRandomCommand({ NumberOfBytes: 8, CustomKeyStoreId: storeOne })))).name)
      .toBe('CustomKeyStoreInvalidStateException');
    expect((await failure(kms().send(new CreateKeyCommand({ CustomKeyStoreId: 'cks-00000000000000000', Origin: 'AWS_CLOUDHSM' })))).name)
      .toBe('CustomKeyStoreNotFoundException');
    expect((await failure(kms().send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne })))).name)
      .toBe('CustomKeyStoreInvalidStateException');
  });

  it('connects asynchronously (CONNECTING, then CONNECTED); connecting again is a no-op', async () => {
    await kms().send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    expect(['CONNECTING', 'CONNECTED']).toContain((await describeStore(storeOne)).ConnectionState);
    await waitFor(storeOne, ['CONNECTED']);
    await kms().send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    expect((await describeStore(storeOne)).ConnectionState).toBe('CONNECTED');
  });

  it('creates AWS_CLOUDHSM keys in the store token only; DescribeKey shows the store and the HSM', async () => {
    expect((await failure(kms().send(new CreateKeyCommand({ CustomKeyStoreId: storeOne })))).name).toBe('ValidationException');
    expect((await failure(kms().send(new CreateKeyCommand({ Origin: 'AWS_CLOUDHSM' })))).name).toBe('ValidationException');
    expect((await failure(kms().send(new CreateKeyCommand({ CustomKeyStoreId: storeOne, Origin: 'AWS_CLOUDHSM', KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' })))).name)
      .toBe('UnsupportedOperationException');
    const created = (await kms().send(new CreateKeyCommand({ CustomKeyStoreId: storeOne, Origin: 'AWS_CLOUDHSM' }))).KeyMetadata!;
    inOne = created.KeyId!;
    expect(created).toMatchObject({ Origin: 'AWS_CLOUDHSM', CustomKeyStoreId: storeOne, CloudHsmClusterId: ONE, KeyState: 'Enabled' });
    expect(await keyState(inOne)).toMatchObject({ CustomKeyStoreId: storeOne, CloudHsmClusterId: ONE, Origin: 'AWS_CLOUDHSM' });
    defaultKey = (await kms().send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    expect((await keyState(defaultKey)).CustomKeyStoreId).toBeUndefined();

    const inStore = inspectToken(asToken(one));
    expect(inStore.map((o) => o.label)).toEqual([`p11kms:${inOne}:v1`]);
    expect(inStore[0]).toMatchObject({ token: true, priv: true, sensitive: true, extractable: false, valueRead: 'CKR_ATTRIBUTE_SENSITIVE' });
    expect(inspectToken(h.token).some((o) => o.label.includes(inOne))).toBe(false);

    const random = await kms().send(new GenerateRandomCommand({ NumberOfBytes: 32, CustomKeyStoreId: storeOne }));
    expect(random.Plaintext!.length).toBe(32);
    // Custom key store keys cannot rotate (AWS).
    expect((await failure(kms().send(new EnableKeyRotationCommand({ KeyId: inOne })))).name).toBe('UnsupportedOperationException');
  });

  it('a wrong KeyStorePassword fails the connection with INVALID_CREDENTIALS; fixing it needs disconnect, update, connect', async () => {
    await kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo, KeyStorePassword: 'not-the-pin' }));
    await kms().send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo }));
    const failed = await waitFor(storeTwo, ['FAILED', 'CONNECTED']);
    expect(failed).toMatchObject({ ConnectionState: 'FAILED', ConnectionErrorCode: 'INVALID_CREDENTIALS' });
    expect((await failure(kms().send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo })))).name)
      .toBe('CustomKeyStoreInvalidStateException');
    expect((await failure(kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo, KeyStorePassword: two.userPin })))).name)
      .toBe('CustomKeyStoreInvalidStateException');
    expect((await failure(kms().send(new CreateKeyCommand({ CustomKeyStoreId: storeTwo, Origin: 'AWS_CLOUDHSM' })))).name)
      .toBe('CustomKeyStoreInvalidStateException');
    await kms().send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo }));
    expect(await describeStore(storeTwo)).toMatchObject({ ConnectionState: 'DISCONNECTED' });
    expect((await describeStore(storeTwo)).ConnectionErrorCode).toBeUndefined();
    await kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo, KeyStorePassword: two.userPin }));
    await kms().send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo }));
    await waitFor(storeTwo, ['CONNECTED']);
  });

  it('a store whose token does not exist fails with CLUSTER_NOT_FOUND', async () => {
    const id = (await create('missing', MISSING, 'password1')).CustomKeyStoreId!;
    await kms().send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: id }));
    expect(await waitFor(id, ['FAILED', 'CONNECTED'])).toMatchObject({ ConnectionState: 'FAILED', ConnectionErrorCode: 'CLUSTER_NOT_FOUND' });
    expect((await failure(kms().send(new DeleteCustomKeyStoreCommand({ CustomKeyStoreId: id })))).name).toBe('CustomKeyStoreInvalidStateException');
    await kms().send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: id }));
    await kms().send(new DeleteCustomKeyStoreCommand({ CustomKeyStoreId: id }));
    expect((await failure(describeStore(id))).name).toBe('CustomKeyStoreNotFoundException');
  });

  let inTwo: string;
  const roundTrip = async (KeyId: string, i: number) => {
    const plaintext = Buffer.from(`message ${i} for ${KeyId}`);
    const enc = await kms().send(new EncryptCommand({ KeyId, Plaintext: plaintext, EncryptionContext: { i: String(i) } }));
    const dec = await kms().send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { i: String(i) } }));
    expect(Buffer.from(dec.Plaintext!).equals(plaintext)).toBe(true);
    expect(dec.KeyId).toContain(KeyId);
  };

  it('keys in the default token and in two store tokens are used concurrently', async () => {
    inTwo = (await kms().send(new CreateKeyCommand({ CustomKeyStoreId: storeTwo, Origin: 'AWS_CLOUDHSM' }))).KeyMetadata!.KeyId!;
    expect(inspectToken(asToken(two)).map((o) => o.label)).toEqual([`p11kms:${inTwo}:v1`]);
    const keys = [defaultKey, inOne, inTwo];
    await Promise.all(Array.from({ length: 90 }, (_, i) => roundTrip(keys[i % 3]!, i)));
    // A ciphertext names its key: decrypting with the wrong store's key is refused.
    const enc = await kms().send(new EncryptCommand({ KeyId: inOne, Plaintext: Buffer.from('x') }));
    expect((await failure(kms().send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: inTwo })))).name).toBe('IncorrectKeyException');
  });

  it('disconnecting a store makes only its keys Unavailable; reconnecting restores Enabled and Disabled', async () => {
    const disabled = (await kms().send(new CreateKeyCommand({ CustomKeyStoreId: storeOne, Origin: 'AWS_CLOUDHSM' }))).KeyMetadata!.KeyId!;
    await kms().send(new DisableKeyCommand({ KeyId: disabled }));
    const enc = await kms().send(new EncryptCommand({ KeyId: inOne, Plaintext: Buffer.from('kept') }));

    await kms().send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    expect((await describeStore(storeOne)).ConnectionState).toBe('DISCONNECTED');
    expect(await keyState(inOne)).toMatchObject({ KeyState: 'Unavailable', Enabled: false });
    expect((await keyState(disabled)).KeyState).toBe('Unavailable');
    for (const call of [
      kms().send(new EncryptCommand({ KeyId: inOne, Plaintext: Buffer.from('x') })),
      kms().send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })),
      kms().send(new GenerateDataKeyCommand({ KeyId: inOne, KeySpec: 'AES_256' })),
      kms().send(new EnableKeyCommand({ KeyId: disabled })),
      kms().send(new DisableKeyCommand({ KeyId: inOne })),
    ]) {
      const e = await failure(call);
      expect(e.name).toBe('KMSInvalidStateException');
      expect(e.$metadata?.httpStatusCode).toBe(400);
    }
    await roundTrip(defaultKey, 1);
    await roundTrip(inTwo, 2);

    // Name changes are allowed while CONNECTED or DISCONNECTED; password and HSM only while DISCONNECTED.
    await kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeOne, NewCustomKeyStoreName: 'store one (renamed)' }));
    await kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo, NewCustomKeyStoreName: 'store two (renamed)' }));
    expect((await failure(kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo, NewCustomKeyStoreName: 'store one (renamed)' })))).name)
      .toBe('CustomKeyStoreNameInUseException');
    expect((await failure(kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo, KeyStorePassword: two.userPin })))).name)
      .toBe('CustomKeyStoreInvalidStateException');
    expect((await failure(kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeOne, CloudHsmClusterId: TWO })))).name)
      .toBe('CloudHsmClusterInUseException');
    expect((await failure(kms().send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: storeOne, CloudHsmClusterId: 'cluster-nosuchcluster' })))).name)
      .toBe('CloudHsmClusterNotFoundException');
    expect((await failure(kms().send(new DeleteCustomKeyStoreCommand({ CustomKeyStoreId: storeTwo })))).name).toBe('CustomKeyStoreInvalidStateException');
    expect((await failure(kms().send(new DeleteCustomKeyStoreCommand({ CustomKeyStoreId: storeOne })))).name).toBe('CustomKeyStoreHasCMKsException');

    await kms().send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    await waitFor(storeOne, ['CONNECTED']);
    expect((await keyState(inOne)).KeyState).toBe('Enabled');
    expect((await keyState(disabled)).KeyState).toBe('Disabled');
    const dec = await kms().send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('kept');
  });

  it('a restart reconnects the stores the operator left connected', async () => {
    const enc = await kms().send(new EncryptCommand({ KeyId: inTwo, Plaintext: Buffer.from('across restarts') }));
    h = await restart(h, clock);
    expect((await describeStore(storeOne)).ConnectionState).toBe('CONNECTED');
    expect((await describeStore(storeTwo)).ConnectionState).toBe('CONNECTED');
    const dec = await kms().send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('across restarts');
    await roundTrip(inOne, 3);
  });

  it('keys deleted while their store is disconnected leave material behind, destroyed when it connects; then the store can be deleted', async () => {
    await kms().send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    const inStore = inspectToken(asToken(one)).map((o) => o.label);
    expect(inStore.length).toBe(2);
    const keyIds = inStore.map((l) => l.split(':')[1]!);
    for (const KeyId of keyIds) {
      const out = await kms().send(new ScheduleKeyDeletionCommand({ KeyId, PendingWindowInDays: 7 }));
      expect(out.KeyState).toBe('PendingDeletion');
      expect((await keyState(KeyId)).KeyState).toBe('PendingDeletion');
    }
    advance(h, clock, 8 * DAY);
    expect((await h.daemon.scheduler.runOnce()).keysDeleted).toBe(2);
    expect(inspectToken(asToken(one)).length).toBe(2); // orphaned, as in AWS
    await kms().send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    await waitFor(storeOne, ['CONNECTED']);
    expect(inspectToken(asToken(one))).toEqual([]);
    await kms().send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    await kms().send(new DeleteCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    expect((await failure(describeStore(storeOne))).name).toBe('CustomKeyStoreNotFoundException');
    // The HSM is free again.
    const again = (await create('store one again', ONE, one.userPin)).CustomKeyStoreId!;
    expect(again).not.toBe(storeOne);
  });
});
