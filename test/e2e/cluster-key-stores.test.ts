import {
  ConnectCustomKeyStoreCommand, CreateCustomKeyStoreCommand, CreateKeyCommand, DecryptCommand, DescribeCustomKeyStoresCommand,
  DisconnectCustomKeyStoreCommand, EncryptCommand,
} from '@aws-sdk/client-kms';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure } from '../helpers/daemon.js';
import { leaderOf, startAll, startNode, stopNodes, until, type ClusterNode } from '../helpers/cluster.js';
import { sharedPgCluster } from '../helpers/postgres.js';
import { createEmulator } from '../helpers/emulator.js';
import { addToken, createTempToken, SOFTHSM_MODULE, type ExtraToken, type TempToken } from '../helpers/softhsm.js';

/**
 * Custom key stores on three daemons sharing one PostgreSQL database and one SoftHSM2 token
 * directory (issue #11, sections 2 and 3): one ConnectionState per store, cluster-wide; each node
 * opens its own sessions to the store's token; a node that cannot reach a CONNECTED store reports
 * it (health, metrics) without flipping the shared state; DisconnectCustomKeyStore on one node
 * refuses the store's keys on every node within the propagation bound; the leader finishes a
 * connect or disconnect step that a dead node left.
 *
 * Store ONE is configured alike on every node. Store TWO's HSM entry on node c names a token
 * that node cannot see (like a node whose HSM client is configured for the wrong partition): the
 * path from c to that store is broken while a and b reach it.
 */

const DB = 'cluster_key_stores';
const ONE = 'cluster-sharedstoreone';
const TWO = 'cluster-sharedstoretwo';
let token: TempToken;
let one: ExtraToken;
let two: ExtraToken;
let nodes: ClusterNode[] = [];
const pg = () => sharedPgCluster();

beforeAll(async () => {
  token = createTempToken();
  one = addToken(token, 'p11kms-ha-one');
  two = addToken(token, 'p11kms-ha-two');
  const url = pg().createDatabase(DB);
  const hsms = (id: string) =>
    JSON.stringify({
      [ONE]: { module: SOFTHSM_MODULE, tokenLabel: one.label, maxSessions: 2 },
      [TWO]: { module: SOFTHSM_MODULE, tokenLabel: id === 'c' ? 'p11kms-ha-elsewhere' : two.label, maxSessions: 2 },
    });
  nodes = await startAll(['a', 'b', 'c'].map((id) => ({ token, databaseUrl: url, id, env: { P11KMS_HSMS: hsms(id), P11KMS_METRICS: 'true' } })));
}, 90_000);

afterAll(() => stopNodes(nodes, token));

const [a, b, c] = [() => nodes[0]!, () => nodes[1]!, () => nodes[2]!];
const text = (s: string) => new TextEncoder().encode(s);
const stateOn = async (n: ClusterNode, id: string) =>
  (await n.kms.send(new DescribeCustomKeyStoresCommand({ CustomKeyStoreId: id }))).CustomKeyStores![0]!;
const encrypt = (n: ClusterNode, KeyId: string) => n.kms.send(new EncryptCommand({ KeyId, Plaintext: text('x') }));
const refused = async (n: ClusterNode, KeyId: string) => (await failure(encrypt(n, KeyId))).name === 'KMSInvalidStateException';

interface StoreHealth { id: string; state: string; errorCode?: string; local: { state: string; errorCode?: string } }
const healthOf = async (n: ClusterNode, id: string) => {
  const res = await fetch(`${n.endpoint}/health/ready`);
  const body = (await res.json()) as { customKeyStores: StoreHealth[] };
  return { status: res.status, store: body.customKeyStores.find((s) => s.id === id) };
};
const reachableGauge = async (n: ClusterNode, id: string) => {
  const m = await (await fetch(`${n.endpoint}/metrics`)).text();
  const line = m.split('\n').find((l) => l.startsWith(`p11kms_custom_key_store_reachable{custom_key_store_id="${id}"}`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
};

async function createStore(name: string, cluster: string, password: string): Promise<string> {
  const id = (await a().kms.send(new CreateCustomKeyStoreCommand({
    CustomKeyStoreName: name, CloudHsmClusterId: cluster, KeyStorePassword: password,
  }))).CustomKeyStoreId!;
  await a().kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: id }));
  await until(async () => (await stateOn(a(), id)).ConnectionState === 'CONNECTED');
  return id;
}

let storeOne: string;
let keyOne: string;

describe('custom key stores on three nodes', () => {
  it('a store connected on one node is CONNECTED on every node, and its keys work on all of them', async () => {
    storeOne = await createStore('ha one', ONE, one.userPin);
    for (const n of [b(), c()]) expect((await stateOn(n, storeOne)).ConnectionState).toBe('CONNECTED');
    keyOne = (await a().kms.send(new CreateKeyCommand({ CustomKeyStoreId: storeOne, Origin: 'AWS_CLOUDHSM' }))).KeyMetadata!.KeyId!;
    // Each node opens its own sessions once it learns the state; measured, not assumed instant.
    const opened = await Promise.all([b(), c()].map((n) => until(async () => !!(await encrypt(n, keyOne)))));
    console.log(`store sessions usable on the other nodes after (ms): ${opened.map((t) => t.toFixed(1)).join(', ')}`);
    const { CiphertextBlob } = await b().kms.send(new EncryptCommand({ KeyId: keyOne, Plaintext: text('shared store') }));
    const { Plaintext } = await c().kms.send(new DecryptCommand({ CiphertextBlob }));
    expect(new TextDecoder().decode(Plaintext)).toBe('shared store');
    for (const n of nodes) expect((await healthOf(n, storeOne)).store).toEqual({ id: storeOne, state: 'CONNECTED', local: { state: 'CONNECTED' } });
  });

  it('a node that cannot reach a CONNECTED store refuses its keys and reports it; the state stays CONNECTED and the others serve', async () => {
    const storeTwo = await createStore('ha two', TWO, two.userPin);
    const keyTwo = (await a().kms.send(new CreateKeyCommand({ CustomKeyStoreId: storeTwo, Origin: 'AWS_CLOUDHSM' }))).KeyMetadata!.KeyId!;
    await until(async () => !!(await encrypt(b(), keyTwo)));
    await until(async () => (await healthOf(c(), storeTwo)).store?.local.state === 'UNREACHABLE');
    const health = await healthOf(c(), storeTwo);
    expect(health).toEqual({
      status: 200, store: { id: storeTwo, state: 'CONNECTED', local: { state: 'UNREACHABLE', errorCode: 'CLUSTER_NOT_FOUND' } },
    });
    expect(await refused(c(), keyTwo)).toBe(true);
    expect(await reachableGauge(c(), storeTwo)).toBe(0);
    expect(await reachableGauge(a(), storeTwo)).toBe(1);
    // c retries with backoff and keeps failing; the shared state is not flipped by it.
    await new Promise((r) => setTimeout(r, 1500));
    for (const n of nodes) expect((await stateOn(n, storeTwo)).ConnectionState).toBe('CONNECTED');
    await encrypt(a(), keyTwo);
    await encrypt(b(), keyTwo);
    // Store ONE, which c reaches, is untouched.
    await encrypt(c(), keyOne);

    // A disconnect left half-done by a node that died (its instance lock is free): the leader finishes it.
    pg().psql(DB, `UPDATE custom_key_stores SET connection_state = 'DISCONNECTING', connection_owner = 'gone.000000000000',
      connection_epoch = connection_epoch + 1, want_connected = 0 WHERE id = '${storeTwo}'`);
    await until(async () => (await stateOn(b(), storeTwo)).ConnectionState === 'DISCONNECTED');
    for (const n of [a(), b()]) await until(() => refused(n, keyTwo));
    expect(await reachableGauge(c(), storeTwo)).toBeUndefined();
  });

  it('DisconnectCustomKeyStore on one node refuses the store\'s keys on every other within the propagation bound', async () => {
    // Warm: the change must close sessions in use, not merely find none.
    for (const n of nodes) await encrypt(n, keyOne);
    const disconnecting = b().kms.send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    const took = await Promise.all([a(), c()].map((n) => until(() => refused(n, keyOne))));
    await disconnecting;
    console.log(`DisconnectCustomKeyStore propagation (ms): ${took.map((t) => t.toFixed(1)).join(', ')}`);
    // The bound is structural (as for DisableKey); this generous limit only catches a propagation that never happened.
    for (const t of took) expect(t).toBeLessThan(5000);
    for (const n of nodes) expect((await stateOn(n, storeOne)).ConnectionState).toBe('DISCONNECTED');
    expect(await refused(b(), keyOne)).toBe(true);
  });

  it('the leader finishes a connect that a dead node left CONNECTING, once; every node then serves the store', async () => {
    await c().kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    await until(async () => (await stateOn(a(), storeOne)).ConnectionState === 'CONNECTED');
    for (const n of nodes) await until(async () => !!(await encrypt(n, keyOne)));
    // As if a node had written CONNECTING (a new epoch) and was killed before its attempt ended.
    pg().psql(DB, `UPDATE custom_key_stores SET connection_state = 'CONNECTING', connection_owner = 'gone.000000000001',
      connection_epoch = connection_epoch + 1, want_connected = 0 WHERE id = '${storeOne}'`);
    const back = await until(async () => (await stateOn(b(), storeOne)).ConnectionState === 'CONNECTED');
    console.log(`abandoned CONNECTING finished by the leader after (ms): ${back.toFixed(1)}`);
    for (const n of nodes) await until(async () => !!(await encrypt(n, keyOne)));
    const leader = leaderOf(nodes);
    const takers = nodes.filter((n) => /taking over a connect whose node is gone/.test(n.output()));
    expect(takers.map((n) => n.id)).toEqual([leader!.id]);
    expect(leader!.output().match(/taking over a connect whose node is gone/g)).toHaveLength(1);
  });

  it('a store token that no node reaches: FAILED everywhere; back on one node, CONNECTED, and every node serves again', async () => {
    const dir = one.tokenDir();
    const hidden = join(token.dir, 'hidden-ha-one');
    renameSync(dir, hidden);
    try {
      // Every node notices (a request, or its once-a-second check) and reports; the last one to find no other node reaching it sets FAILED.
      for (const n of nodes) await until(() => refused(n, keyOne));
      await until(async () => (await stateOn(a(), storeOne)).ConnectionState === 'FAILED', 15_000);
      for (const n of nodes) expect(await stateOn(n, storeOne)).toMatchObject({ ConnectionState: 'FAILED', ConnectionErrorCode: 'CLUSTER_NOT_FOUND' });
    } finally {
      renameSync(hidden, dir);
    }
    const back = await Promise.all(nodes.map((n) => until(async () => !!(await encrypt(n, keyOne)), 30_000)));
    console.log(`store token restored: usable again on the three nodes after (ms): ${back.map((t) => t.toFixed(0)).join(', ')}`);
    for (const n of nodes) expect((await stateOn(n, storeOne)).ConnectionState).toBe('CONNECTED');
  });

  it('a node killed with SIGKILL inside its connect attempt: the leader takes the attempt over, once', async () => {
    await a().kms.send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne }));
    for (const n of nodes) await until(async () => (await stateOn(n, storeOne)).ConnectionState === 'DISCONNECTED');
    // Node d reaches store ONE through the HSM emulator, whose C_Login takes 4 s (a slow network
    // HSM): its connect attempt is still inside the module when it is killed.
    const emulator = createEmulator(token.dir, undefined, { latency_ms: 4000, latency_functions: 'C_Login' });
    const hsms = JSON.stringify({ [ONE]: { module: emulator.module, tokenLabel: one.label, maxSessions: 2 } });
    const d = await startNode({ token, databaseUrl: pg().url(DB), id: 'd', env: { P11KMS_HSMS: hsms, P11EMU_CONFIG: emulator.config } });
    const takenBefore = nodes.map((n) => (n.output().match(/taking over a connect whose node is gone/g) ?? []).length);
    void d.kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: storeOne })).catch(() => undefined);
    await until(async () => pg().psql(DB, `SELECT connection_state || ' ' || connection_owner FROM custom_key_stores WHERE id = '${storeOne}'`).startsWith('CONNECTING d.'));
    d.child.kill('SIGKILL');
    await d.exited;
    const back = await until(async () => (await stateOn(a(), storeOne)).ConnectionState === 'CONNECTED', 15_000, 20);
    console.log(`connect of a node killed inside C_Login finished by the leader after (ms): ${back.toFixed(0)}`);
    for (const n of nodes) await until(async () => !!(await encrypt(n, keyOne)));
    const taken = nodes.map((n, i) => (n.output().match(/taking over a connect whose node is gone/g) ?? []).length - takenBefore[i]!);
    expect(taken.reduce((x, y) => x + y, 0)).toBe(1);
    expect(nodes[taken.indexOf(1)]!.id).toBe(leaderOf(nodes)!.id);
  });
});
