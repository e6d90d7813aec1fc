import {
  CreateKeyCommand, DecryptCommand, DescribeKeyCommand, DisableKeyCommand, EncryptCommand, KMSClient, ReplicateKeyCommand,
} from '@aws-sdk/client-kms';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { PgStore } from '../../src/store/pg/store.js';
import { ADMIN, failure } from '../helpers/daemon.js';
import { leaderOf, startNodes, stopNodes, until, type ClusterNode } from '../helpers/cluster.js';
import { sharedPgCluster } from '../helpers/postgres.js';
import type { TempToken } from '../helpers/softhsm.js';

/**
 * Two nodes on one PostgreSQL database serving two regions (us-east-1, the default, and
 * eu-west-1): the further region's metadata is in its own schema of the shared database, so what
 * one node does in eu-west-1 the other sees at once, its change feed is its own, and its jobs run
 * on the leader only.
 */

const DB = 'cluster_regions';
let token: TempToken;
let url: string;
let nodes: ClusterNode[] = [];
const text = (s: string) => new TextEncoder().encode(s);
const psql = (sql: string) => sharedPgCluster().psql(DB, sql).trim();
const west = (n: ClusterNode) => new KMSClient({ endpoint: n.endpoint, region: 'eu-west-1', credentials: ADMIN, maxAttempts: 1 });
const [a, b] = [() => nodes[0]!, () => nodes[1]!];

beforeAll(async () => {
  ({ token, url, nodes } = await startNodes(DB, { P11KMS_REGIONS: 'eu-west-1', P11KMS_SCHEDULER_INTERVAL_MS: '200' }, ['a', 'b']));
}, 90_000);

afterAll(() => stopNodes(nodes, token));

/** Sum of p11kms_job_runs_total over every job, as one node counts it. */
async function jobRuns(n: ClusterNode): Promise<number> {
  const body = await (await fetch(`${n.endpoint}/metrics`)).text();
  return [...body.matchAll(/^p11kms_job_runs_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

describe('a further region on a shared PostgreSQL database', () => {
  it('a key created in eu-west-1 on one node encrypts and decrypts there on the other; a DisableKey reaches it through the region\'s own feed', async () => {
    // Changes in the default region first, so that its change sequence is ahead of eu-west-1's:
    // a feed that took the other schema's notifications would then skip eu-west-1's.
    for (let i = 0; i < 3; i++) await a().kms.send(new CreateKeyCommand({}));
    const { KeyMetadata } = await west(a()).send(new CreateKeyCommand({ Description: 'west' }));
    const KeyId = KeyMetadata!.KeyId!;
    expect(KeyMetadata!.Arn).toMatch(/^arn:aws:kms:eu-west-1:/);
    const { CiphertextBlob } = await west(b()).send(new EncryptCommand({ KeyId, Plaintext: text('w') }));
    expect(new TextDecoder().decode((await west(a()).send(new DecryptCommand({ CiphertextBlob }))).Plaintext)).toBe('w');
    expect((await failure(b().kms.send(new DescribeKeyCommand({ KeyId })))).name).toBe('NotFoundException');
    expect(psql(`SELECT description FROM p11kms_eu_west_1.keys WHERE key_id = '${KeyId}'`)).toBe('west');
    for (const n of nodes) expect(existsSync(join(n.dataDir, 'regions', 'eu-west-1', 'metadata.sqlite'))).toBe(false);
    await west(a()).send(new DisableKeyCommand({ KeyId }));
    const took = await until(async () => (await failure(west(b()).send(new EncryptCommand({ KeyId, Plaintext: text('x') })))).name === 'DisabledException');
    console.log(`eu-west-1 DisableKey on a reached b after ${took.toFixed(1)} ms`);
  });

  it('a ReplicateKey on one node is visible and usable on the other', async () => {
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({ MultiRegion: true }));
    const KeyId = KeyMetadata!.KeyId!;
    const { CiphertextBlob } = await a().kms.send(new EncryptCommand({ KeyId, Plaintext: text('mrk') }));
    await a().kms.send(new ReplicateKeyCommand({ KeyId, ReplicaRegion: 'eu-west-1' }));
    const replica = (await west(b()).send(new DescribeKeyCommand({ KeyId }))).KeyMetadata;
    expect(replica?.MultiRegionConfiguration?.MultiRegionKeyType).toBe('REPLICA');
    expect(replica?.KeyState).toBe('Enabled');
    expect(new TextDecoder().decode((await west(b()).send(new DecryptCommand({ CiphertextBlob }))).Plaintext)).toBe('mrk');
    expect(psql(`SELECT primary_region FROM p11kms_eu_west_1.multi_region_keys WHERE key_id = '${KeyId}'`)).toBe('us-east-1');
  });

  it('a Multi-Region key id locked in one region is not locked in the other (key locks are per region)', async () => {
    const open = (region?: string) => PgStore.open({ url, nodeId: 'locks', log: silentLogger, region });
    // A third store, of eu-west-1 again, as another node's: advisory locks are re-entrant within one connection.
    const [east, westStore, otherWest] = await Promise.all([open(), open('eu-west-1'), open('eu-west-1')]);
    try {
      const keyId = 'mrk-00000000000000000000000000000001';
      const unlockEast = await east.shared.lockKey(keyId);
      const second = await Promise.race([westStore.shared.lockKey(keyId), new Promise<'blocked'>((r) => setTimeout(() => r('blocked'), 2000))]);
      expect(second).not.toBe('blocked');
      await (second as () => Promise<void>)();
      await unlockEast();
      // Within one region the lock still excludes: another node's store waits until the holder unlocks.
      const held = await westStore.shared.lockKey(keyId);
      const waiting = otherWest.shared.lockKey(keyId);
      const first = await Promise.race([east.shared.lockKey(keyId).then((u) => ({ who: 'east', u })), waiting.then((u) => ({ who: 'west', u }))]);
      expect(first.who).toBe('east');
      await first.u();
      await held();
      await (await waiting)();
    } finally {
      for (const s of [east, westStore, otherWest]) {
        await s.shared.release();
        s.close();
      }
    }
  });

  it("only the leader runs jobs (every region's); a new leader runs them", async () => {
    await until(async () => leaderOf(nodes) !== undefined);
    const leader = leaderOf(nodes)!;
    const follower = nodes.find((n) => n !== leader)!;
    // Ticks every 200 ms: a follower running eu-west-1's scheduler would have counted runs by now.
    await new Promise((r) => setTimeout(r, 600));
    expect(await jobRuns(follower)).toBe(0);
    expect(await jobRuns(leader)).toBeGreaterThan(0);
    await leader.kill('SIGKILL');
    await until(async () => /now the leader/.test(follower.output()), 15_000, 20);
    await until(async () => (await jobRuns(follower)) > 0);
    // The new leader's eu-west-1 store follows its leadership: region keys still work there.
    expect((await west(follower).send(new CreateKeyCommand({}))).KeyMetadata?.Arn).toMatch(/^arn:aws:kms:eu-west-1:/);
  });
});
