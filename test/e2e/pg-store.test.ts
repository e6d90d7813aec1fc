import { CreateKeyCommand, DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, until, type ClusterNode } from '../helpers/cluster.js';
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
});

describe('PostgreSQL restarted under load', () => {
  let node: ClusterNode;

  beforeAll(async () => {
    node = await startNode({ token, databaseUrl: pg.createDatabase('restart'), id: 'solo' });
  });

  afterAll(async () => {
    await node?.kill();
  });

  it('answers DependencyTimeoutException (503) while the database is away, never hangs, and recovers without a restart', async () => {
    const { KeyMetadata } = await node.kms.send(new CreateKeyCommand({}));
    const KeyId = KeyMetadata!.KeyId!;
    let stop = false;
    const outcomes: { name: string; status?: number; ms: number }[] = [];
    const load = (async () => {
      while (!stop) {
        const started = performance.now();
        try {
          const { CiphertextBlob } = await node.kms.send(new EncryptCommand({ KeyId, Plaintext: text('under load') }));
          await node.kms.send(new DecryptCommand({ CiphertextBlob }));
          outcomes.push({ name: 'ok', ms: performance.now() - started });
        } catch (e) {
          const err = e as Error & { $metadata?: { httpStatusCode?: number } };
          outcomes.push({ name: err.name, status: err.$metadata?.httpStatusCode, ms: performance.now() - started });
        }
      }
    })();
    await until(async () => outcomes.some((o) => o.name === 'ok'));
    pg.stop('fast');
    const awayFrom = outcomes.length;
    await until(async () => outcomes.slice(awayFrom).filter((o) => o.name !== 'ok').length >= 5, 15_000);
    pg.start();
    const backFrom = outcomes.length;
    const recovered = await until(async () => outcomes.slice(backFrom).some((o) => o.name === 'ok'), 15_000, 20);
    stop = true;
    await load;
    const away = outcomes.slice(awayFrom, backFrom).filter((o) => o.name !== 'ok');
    expect(new Set(away.map((o) => `${o.name} ${o.status}`))).toEqual(new Set(['DependencyTimeoutException 503']));
    console.log(`while away: ${away.length} refusals, slowest ${Math.max(...away.map((o) => o.ms)).toFixed(0)} ms; recovered ${recovered.toFixed(0)} ms after start`);
    // Recovered: new keys too (writes), not only cached reads.
    const again = await node.kms.send(new CreateKeyCommand({}));
    expect(again.KeyMetadata!.KeyState).toBe('Enabled');
    expect(node.child.exitCode).toBeNull();
  });
});
