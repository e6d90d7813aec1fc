import {
  ConnectCustomKeyStoreCommand, CreateCustomKeyStoreCommand, CreateKeyCommand, DecryptCommand, DescribeCustomKeyStoresCommand,
  DescribeKeyCommand, DisconnectCustomKeyStoreCommand, EncryptCommand,
} from '@aws-sdk/client-kms';
import { chmodSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModule } from '../../src/hsm/module.js';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { addToken, SOFTHSM_MODULE, type ExtraToken, type TempToken } from '../helpers/softhsm.js';

/**
 * Faults of custom key store tokens under the running daemon (issue #6, section 3), with real
 * SoftHSM2 tokens: the token's files removed (or made unreadable) and restored, sessions closed
 * under the daemon, the PIN changed, and a disconnect while requests are in flight. Throughout,
 * keys in the default token must not notice.
 */

const STORE = 'cluster-faultystore';
let h: Harness;
let store: ExtraToken;
let storeId: string;
let storeKey: string;
let defaultKey: string;

beforeAll(async () => {
  h = await startHarness({
    prepare: (t: TempToken) => {
      store = addToken(t, 'p11kms-faulty');
      return { P11KMS_HSMS: JSON.stringify({ [STORE]: { module: SOFTHSM_MODULE, tokenLabel: store.label, maxSessions: 4 } }) };
    },
  });
  storeId = (await h.kms.send(new CreateCustomKeyStoreCommand({
    CustomKeyStoreName: 'faulty', CloudHsmClusterId: STORE, KeyStorePassword: store.userPin,
  }))).CustomKeyStoreId!;
  await h.kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeId }));
  await waitFor(['CONNECTED']);
  storeKey = (await h.kms.send(new CreateKeyCommand({ CustomKeyStoreId: storeId, Origin: 'AWS_CLOUDHSM' }))).KeyMetadata!.KeyId!;
  defaultKey = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
});
afterAll(async () => {
  await h?.stop();
});

const status = async () => (await h.kms.send(new DescribeCustomKeyStoresCommand({ CustomKeyStoreId: storeId }))).CustomKeyStores![0]!;

async function waitFor(states: string[], ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await status();
    if (states.includes(s.ConnectionState!)) return s;
    if (Date.now() > deadline) throw new Error(`store is ${s.ConnectionState} (${s.ConnectionErrorCode}), expected ${states.join('/')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const encrypt = (KeyId: string, text = 'x') => h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from(text) }));

/** Round trips with the default-token key until stopped; collects every failure. */
function defaultTraffic() {
  let running = true;
  const failures: string[] = [];
  let done = 0;
  const loops = Array.from({ length: 4 }, async () => {
    while (running) {
      try {
        const enc = await encrypt(defaultKey, 'default');
        const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
        if (Buffer.from(dec.Plaintext!).toString() !== 'default') failures.push('wrong plaintext');
        done++;
      } catch (e) {
        failures.push(`${(e as Error).name}: ${(e as Error).message}`);
      }
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return { failures, done };
    },
  };
}

/** Every store-key call fails cleanly: a 4xx KMSInvalidStateException, never a hang or a 5xx. */
async function expectRefused(call: Promise<unknown>) {
  const e = await failure(call);
  expect(e.name).toBe('KMSInvalidStateException');
  expect(e.$metadata?.httpStatusCode).toBe(400);
}

describe('a store token that disappears under the running daemon', () => {
  it('token files removed: the store FAILS (CLUSTER_NOT_FOUND), its keys refuse, default keys are unaffected; restored: it reconnects', async () => {
    const before = await encrypt(storeKey, 'before the fault');
    const generation = loadModule(SOFTHSM_MODULE).generation;
    const traffic = defaultTraffic();
    const dir = store.tokenDir();
    const hidden = join(h.token.dir, 'hidden-token');
    renameSync(dir, hidden);
    try {
      // The first request after the loss notices it (or the health monitor did already).
      await expectRefused(encrypt(storeKey));
      const failed = await waitFor(['FAILED']);
      expect(failed.ConnectionErrorCode).toBe('CLUSTER_NOT_FOUND');
      // Readiness follows the default token; the store's state is listed beside it.
      const ready = await fetch(`${h.endpoint}/health/ready`);
      expect(ready.status).toBe(200);
      const body = (await ready.json()) as { customKeyStores: { id: string; state: string; errorCode?: string }[] };
      // The shared state, and this node's own (issue #11): one node, so both say the token is gone.
      expect(body.customKeyStores).toContainEqual({
        id: storeId, state: 'FAILED', errorCode: 'CLUSTER_NOT_FOUND', local: { state: 'UNREACHABLE', errorCode: 'CLUSTER_NOT_FOUND' },
      });
      expect((await h.kms.send(new DescribeKeyCommand({ KeyId: storeKey }))).KeyMetadata!.KeyState).toBe('Unavailable');
      await expectRefused(h.kms.send(new DecryptCommand({ CiphertextBlob: before.CiphertextBlob })));
      // Still missing after a few backoff rounds.
      await new Promise((r) => setTimeout(r, 1000));
      expect((await status()).ConnectionState).toBe('FAILED');
    } finally {
      renameSync(hidden, dir);
    }
    await waitFor(['CONNECTED']);
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: before.CiphertextBlob }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('before the fault');
    await encrypt(storeKey);
    const { failures, done } = await traffic.stop();
    expect(failures).toEqual([]);
    expect(done).toBeGreaterThan(10);
    // SoftHSM2 sees restored files only after C_Finalize + C_Initialize of the module that the
    // default token shares: that happened, under the default-key traffic above, without a failure.
    expect(loadModule(SOFTHSM_MODULE).generation).toBeGreaterThan(generation);
  });

  it.skipIf(process.getuid?.() === 0)('token files made unreadable: the same, and it reconnects when they are readable again', async () => {
    // (root reads files whatever their mode, so this runs only as an unprivileged user.)
    const traffic = defaultTraffic();
    const dir = store.tokenDir();
    chmodSync(dir, 0o000);
    try {
      await expectRefused(encrypt(storeKey));
      expect((await waitFor(['FAILED'])).ConnectionErrorCode).toBeDefined();
    } finally {
      chmodSync(dir, 0o700);
    }
    await waitFor(['CONNECTED']);
    await encrypt(storeKey);
    expect((await traffic.stop()).failures).toEqual([]);
  });

  it('sessions closed under the daemon (an HSM restart): recovered transparently, the store stays CONNECTED', async () => {
    const p = loadModule(SOFTHSM_MODULE).pkcs11;
    const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === store.label)!;
    p.C_CloseAllSessions(slot);
    await encrypt(storeKey);
    expect((await status()).ConnectionState).toBe('CONNECTED');
  });

  it('a PIN changed under a connected store: FAILED with INVALID_CREDENTIALS once it must log in again, and not retried', async () => {
    const p = loadModule(SOFTHSM_MODULE).pkcs11;
    const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === store.label)!;
    const s = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    const changed = `${store.userPin}-changed`;
    p.C_SetPIN(s, store.userPin, changed); // the daemon is logged in, so this session is too
    p.C_CloseAllSessions(slot); // logged out: the daemon must log in again, with the old PIN
    await expectRefused(encrypt(storeKey));
    expect(await waitFor(['FAILED'])).toMatchObject({ ConnectionErrorCode: 'INVALID_CREDENTIALS' });
    await new Promise((r) => setTimeout(r, 800));
    expect(await status()).toMatchObject({ ConnectionState: 'FAILED', ConnectionErrorCode: 'INVALID_CREDENTIALS' });
    // Put the PIN back; the operator disconnects and connects again (AWS's procedure).
    const s2 = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    p.C_Login(s2, pkcs11js.CKU_USER, changed);
    p.C_SetPIN(s2, changed, store.userPin);
    p.C_Logout(s2);
    p.C_CloseSession(s2);
    await h.kms.send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeId }));
    await h.kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeId }));
    await waitFor(['CONNECTED']);
    await encrypt(storeKey);
  });
});

describe('DisconnectCustomKeyStore while requests are in flight', () => {
  it('every request finishes or fails cleanly with KMSInvalidStateException; none hangs', async () => {
    const calls = Array.from({ length: 200 }, (_, i) =>
      i % 2 ? encrypt(storeKey, `in flight ${i}`) : encrypt(storeKey, `in flight ${i}`).then((e) => h.kms.send(new DecryptCommand({ CiphertextBlob: e.CiphertextBlob }))),
    );
    await new Promise((r) => setTimeout(r, 20));
    const disconnected = h.kms.send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeId }));
    const all = Promise.allSettled([...calls, disconnected]);
    const outcome = await Promise.race([all, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    expect(outcome).not.toBe('hung');
    const results = outcome as PromiseSettledResult<unknown>[];
    const disconnect = results.pop()!;
    expect(disconnect.status).toBe('fulfilled');
    const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as Error);
    expect(new Set(refused.map((e) => e.name))).toEqual(refused.length ? new Set(['KMSInvalidStateException']) : new Set());
    expect(results.length - refused.length).toBeGreaterThan(0);
    expect((await status()).ConnectionState).toBe('DISCONNECTED');
    await expectRefused(encrypt(storeKey));
    await encrypt(defaultKey);
    await h.kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeId }));
    await waitFor(['CONNECTED']);
    await encrypt(storeKey);
  });
});
