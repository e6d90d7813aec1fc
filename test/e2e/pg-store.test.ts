import { CreateKeyCommand, DecryptCommand, EncryptCommand, ListKeysCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAll, startNode, until, type ClusterNode } from '../helpers/cluster.js';
import { failure } from '../helpers/daemon.js';
import { startPgCluster, type PgCluster } from '../helpers/postgres.js';
import { createTempToken, type TempToken } from '../helpers/softhsm.js';

/**
 * The PostgreSQL store's own faults, on a PostgreSQL cluster of this file's (it is stopped and
 * started under load): a schema newer than the code, and the database going away and coming back.
 */

let pg: PgCluster;
let token: TempToken;
const text = (s: string) => new TextEncoder().encode(s);

beforeAll(() => {
  pg = startPgCluster();
  token = createTempToken();
});

afterAll(() => {
  pg?.destroy();
  token?.cleanup();
});

describe('schema versions', () => {
  it('a node refuses to start on a schema newer than its code, with a clear message', async () => {
    const url = pg.createDatabase('newer');
    const first = await startNode({ token, databaseUrl: url, id: 'first' });
    await first.kill();
    pg.psql('newer', 'INSERT INTO p11kms_schema (version) VALUES (99)');
    const e = (await startNode({ token, databaseUrl: url, id: 'old-code' }).catch((x: unknown) => x)) as { output?: string };
    expect(e.output).toMatch(/schema version 99, newer than this p11kms knows \(\d+\)/);
  });

  it('a node that cannot use its database refuses to start, with the reason PostgreSQL gave', async () => {
    const e = (await startNode({ token, databaseUrl: pg.url('does_not_exist'), id: 'lost' }).catch((x: unknown) => x)) as { output?: string };
    expect(e.output).toMatch(/Cannot use the metadata database: database \\"does_not_exist\\" does not exist/);
  });
});

describe('PostgreSQL restarted under load', () => {
  let node: ClusterNode;
  /** Two more nodes on the same database for the restart: every node must recover by itself. */
  let others: ClusterNode[] = [];

  beforeAll(async () => {
    const url = pg.createDatabase('restart');
    node = await startNode({ token, databaseUrl: url, id: 'solo' });
    others = await startAll(['second', 'third'].map((id) => ({ token, databaseUrl: url, id })));
  });

  afterAll(async () => {
    await Promise.all([node, ...others].map((n) => n?.kill()));
  });

  /** GET /health/ready (what a load balancer checks) and the database gauge of /metrics. */
  const ready = async (n = node) => {
    const r = await fetch(`${n.endpoint}/health/ready`);
    return { status: r.status, body: (await r.json()) as { status: string; database: Record<string, unknown> } };
  };
  const databaseUp = async () => /^p11kms_database_up\{kind="postgresql"\} (\d)$/m.exec(await (await fetch(`${node.endpoint}/metrics`)).text())?.[1];

  it('every node answers DependencyTimeoutException (503) while the database is away, never hangs, and recovers without a restart', async () => {
    const before = await ready();
    expect(before.status).toBe(200);
    expect(before.body.database).toMatchObject({ kind: 'postgresql', state: 'ok', nodeId: 'solo', leader: true, schemaVersion: expect.any(Number) });
    expect(await databaseUp()).toBe('1');
    const { KeyMetadata } = await node.kms.send(new CreateKeyCommand({}));
    const KeyId = KeyMetadata!.KeyId!;
    let stop = false;
    // The solo node's outcomes drive the assertions below; the other two nodes carry the same load.
    const outcomes: { name: string; status?: number; ms: number }[] = [];
    const byNode = new Map<string, typeof outcomes>([[node.id, outcomes], ...others.map((n) => [n.id, []] as [string, typeof outcomes])]);
    const load = Promise.all([node, ...others].map(async (n) => {
      const mine = byNode.get(n.id)!;
      while (!stop) {
        const started = performance.now();
        try {
          const { CiphertextBlob } = await n.kms.send(new EncryptCommand({ KeyId, Plaintext: text('under load') }));
          await n.kms.send(new DecryptCommand({ CiphertextBlob }));
          mine.push({ name: 'ok', ms: performance.now() - started });
        } catch (e) {
          const err = e as Error & { $metadata?: { httpStatusCode?: number } };
          mine.push({ name: err.name, status: err.$metadata?.httpStatusCode, ms: performance.now() - started });
        }
      }
    }));
    const marks = () => new Map([...byNode].map(([id, o]) => [id, o.length]));
    await until(async () => [...byNode.values()].every((o) => o.some((x) => x.name === 'ok')));
    pg.stop('fast');
    const stoppedAt = performance.now();
    const awayFrom = outcomes.length;
    const awayMarks = marks();
    await until(async () => outcomes.slice(awayFrom).filter((o) => o.name !== 'ok').length >= 5, 15_000);
    // Readiness says so (a load balancer takes the node out), and names the database, never its URL.
    await until(async () => (await ready()).status === 503, 15_000, 20);
    const outAfter = performance.now() - stoppedAt;
    const away = await ready();
    expect(away.body.status).toBe('unavailable');
    expect(away.body.database).toMatchObject({ kind: 'postgresql', state: 'unavailable', leader: false });
    expect(JSON.stringify(away.body)).not.toContain(pg.dir);
    expect(await databaseUp()).toBe('0');
    for (const n of others) await until(async () => (await ready(n)).status === 503, 15_000, 20);
    pg.start();
    const backFrom = outcomes.length;
    const backMarks = marks();
    const recovered = await until(async () => outcomes.slice(backFrom).some((o) => o.name === 'ok'), 15_000, 20);
    // Every node serves again by itself, none restarted.
    await until(async () => [...byNode].every(([id, o]) => o.slice(backMarks.get(id)).some((x) => x.name === 'ok')), 15_000, 20);
    stop = true;
    await load;
    const refused = outcomes.slice(awayFrom, backFrom).filter((o) => o.name !== 'ok');
    expect(new Set(refused.map((o) => `${o.name} ${o.status}`))).toEqual(new Set(['DependencyTimeoutException 503']));
    for (const [id, o] of byNode) {
      const theirs = o.slice(awayMarks.get(id), backMarks.get(id)).filter((x) => x.name !== 'ok');
      expect({ id, refusals: theirs.length > 0, kinds: [...new Set(theirs.map((x) => `${x.name} ${x.status}`))] })
        .toEqual({ id, refusals: true, kinds: ['DependencyTimeoutException 503'] });
    }
    // Ready again by itself, without a restart, once no request is failing any more.
    const readyAgain = await until(async () => (await ready()).status === 200, 15_000, 20);
    expect((await ready()).body.database).toMatchObject({ state: 'ok' });
    for (const n of others) await until(async () => (await ready(n)).status === 200, 15_000, 20);
    // Leadership is contested again once the database is back: exactly one node leads.
    await until(async () => (await Promise.all([node, ...others].map(async (n) => (await ready(n)).body.database.leader))).filter(Boolean).length === 1, 15_000, 20);
    expect(await databaseUp()).toBe('1');
    console.log(`while away: ${refused.length} refusals, slowest ${Math.max(...refused.map((o) => o.ms)).toFixed(0)} ms, /health/ready 503 within ${outAfter.toFixed(0)} ms of the stop; ` +
      `recovered ${recovered.toFixed(0)} ms after start, ready again ${readyAgain.toFixed(0)} ms after that`);
    // Recovered: new keys too (writes), not only cached reads.
    for (const n of [node, ...others]) {
      expect((await n.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyState).toBe('Enabled');
      expect(n.child.exitCode).toBeNull();
    }
  });

  it('a statement that times out (a lock held elsewhere) is DependencyTimeoutException (503), changes nothing, and the next succeeds', async () => {
    // Another client holds the keys table for longer than the node's statement deadline (3 s).
    const holder = pg.psqlInBackground('restart', 'BEGIN; LOCK TABLE keys IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;');
    await until(async () => pg.psql('restart', "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND granted AND relation = 'keys'::regclass") === '1\n');
    const e = await failure(node.kms.send(new CreateKeyCommand({ Description: 'waits for the lock' })));
    expect([e.name, e.$metadata?.httpStatusCode]).toEqual(['DependencyTimeoutException', 503]);
    expect(e.message).toMatch(/did not complete the request in time/);
    await holder;
    expect(pg.psql('restart', "SELECT count(*) FROM keys WHERE description = 'waits for the lock'")).toBe('0\n');
    expect((await node.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyState).toBe('Enabled');
  });

  it('statements that cannot reach the database make the node not ready even while its change feed answers', async () => {
    // The store's connection is cut and cannot come back (the database takes no new connections);
    // the change feed's connection stays up, so only the failing statements can tell.
    pg.psql('postgres', 'ALTER DATABASE restart ALLOW_CONNECTIONS false');
    pg.psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'restart' AND application_name LIKE 'p11kms %'");
    let stop = false;
    const refusals: string[] = [];
    const load = (async () => {
      while (!stop) {
        const e = await failure(node.kms.send(new ListKeysCommand({}))).catch(() => undefined);
        if (e) refusals.push(`${e.name} ${e.$metadata?.httpStatusCode}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      // The reason names the statements, not the feed: the feed stays confirmed, the statements decide.
      await until(async () => /statements are failing/.test(String((await ready()).body.database.reason)), 10_000, 20);
      const r = await ready();
      expect(r.status).toBe(503);
      expect(r.body.database).toMatchObject({ state: 'unavailable', lastConfirmedMsAgo: expect.any(Number) });
    } finally {
      pg.psql('postgres', 'ALTER DATABASE restart ALLOW_CONNECTIONS true');
    }
    await until(async () => (await ready()).status === 200, 15_000, 20);
    stop = true;
    await load.catch(() => undefined);
    expect(new Set(refusals)).toEqual(new Set(['DependencyTimeoutException 503']));
    expect((await node.kms.send(new ListKeysCommand({}))).Keys!.length).toBeGreaterThan(0);
  });
});
