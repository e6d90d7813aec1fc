import { CreateAliasCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand, EncryptCommand, SignCommand, type KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leaderOf, startNode, startNodes, stopNodes, until, type ClusterNode } from '../helpers/cluster.js';
import { inspectToken } from '../helpers/inspect.js';
import { sharedPgCluster } from '../helpers/postgres.js';
import type { TempToken } from '../helpers/softhsm.js';

/**
 * kill -9 of one of three nodes (the leader) under mixed load, with clients failing over to
 * the other nodes: no acknowledged write is lost, no token object is left without its row once
 * the dead instance's work is reconciled, and background jobs continue on a new leader.
 */

const DB = 'cluster_faults';
let token: TempToken;
let url: string;
let nodes: ClusterNode[] = [];
const pg = () => sharedPgCluster();
const text = (s: string) => new TextEncoder().encode(s);

beforeAll(async () => {
  ({ token, url, nodes } = await startNodes(DB));
}, 90_000);

afterAll(() => stopNodes(nodes, token));

/** A client that tries the next node when one does not answer (no HTTP status: refused, reset). */
function failoverClient(all: () => ClusterNode[]) {
  let current = 0;
  return async <T>(send: (kms: KMSClient) => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      const list = all();
      const node = list[current % list.length]!;
      try {
        return await send(node.kms);
      } catch (e) {
        const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status !== undefined || attempt >= 2 * list.length) throw e;
        current++;
      }
    }
  };
}

describe('kill -9 under load', () => {
  it('loses no acknowledged write, leaves no orphan, and the scheduler continues on another node', async () => {
    await until(async () => leaderOf(nodes) !== undefined);
    const victim = leaderOf(nodes)!;
    const acknowledged: { keyId: string; alias: string; blob: Uint8Array; plain: string }[] = [];
    let stop = false;
    let failures = 0;
    const worker = async (w: number) => {
      const call = failoverClient(() => nodes);
      for (let i = 0; !stop; i++) {
        try {
          const { KeyMetadata } = await call((k) => k.send(new CreateKeyCommand({})));
          const keyId = KeyMetadata!.KeyId!;
          const alias = `alias/w${w}-${i}`;
          await call((k) => k.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyId })));
          const plain = `w${w}-${i}`;
          const { CiphertextBlob } = await call((k) => k.send(new EncryptCommand({ KeyId: alias, Plaintext: text(plain) })));
          acknowledged.push({ keyId, alias, blob: CiphertextBlob!, plain });
        } catch {
          // A write whose answer was lost with the node (the retry may find the alias taken): not acknowledged.
          failures++;
        }
      }
    };
    const load = Promise.all([0, 1, 2, 3].map(worker));
    await until(async () => acknowledged.length >= 8, 20_000, 20);
    victim.child.kill('SIGKILL');
    await victim.exited;
    const killedAt = acknowledged.length;
    const survivors = nodes.filter((n) => n !== victim);
    await until(async () => acknowledged.length >= killedAt + 8, 20_000, 20);
    stop = true;
    await load;
    nodes = survivors;
    console.log(`acknowledged ${acknowledged.length} key+alias+encrypt sequences (${killedAt} before the kill), ${failures} not acknowledged`);

    // Every acknowledged write is there, on every surviving node.
    for (const a of acknowledged) {
      for (const n of survivors) {
        const { Plaintext, KeyId } = await n.kms.send(new DecryptCommand({ CiphertextBlob: a.blob }));
        expect(new TextDecoder().decode(Plaintext)).toBe(a.plain);
        expect(KeyId).toContain(a.keyId);
      }
      expect((await survivors[0]!.kms.send(new DescribeKeyCommand({ KeyId: a.alias }))).KeyMetadata!.KeyId).toBe(a.keyId);
    }

    // A new leader, and it runs jobs: it reconciles what the dead instance left pending.
    await until(async () => survivors.some((n) => /now the leader/.test(n.output())), 15_000, 20);
    // A node started now reconciles at once (the leader does it every 30 s): the dead instance's pending rows go.
    const fresh = await startNode({ token, databaseUrl: url, id: 'd' });
    nodes.push(fresh);
    expect(pg().psql(DB, "SELECT count(*) FROM key_materials WHERE state = 'pending'")).toBe('0\n');
    const rows = new Set(pg().psql(DB, "SELECT encode(object_id, 'hex') FROM key_materials").trim().split('\n').filter(Boolean));
    const orphans = inspectToken(token).filter((o) => !rows.has(o.id));
    expect(orphans).toEqual([]);
  });

  it('a node starting while the others create keys destroys nothing of theirs', async () => {
    // RSA key pairs take SoftHSM2 tens to hundreds of ms: the starting node's reconciliation
    // runs while other nodes have version rows pending and objects half made.
    const made: string[] = [];
    let stop = false;
    const creator = async (n: ClusterNode) => {
      while (!stop) {
        const { KeyMetadata } = await n.kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }));
        made.push(KeyMetadata!.KeyId!);
      }
    };
    const load = Promise.all(nodes.slice(0, 2).map(creator));
    await until(async () => made.length >= 2, 20_000, 20);
    const late = await startNode({ token, databaseUrl: url, id: 'e' });
    nodes.push(late);
    const before = made.length;
    await until(async () => made.length >= before + 2, 20_000, 20);
    stop = true;
    await load;
    const report = JSON.parse(late.output().split('\n').find((l) => l.includes('start-up reconciliation done'))!);
    expect({ pendingRemoved: report.pendingRemoved, orphansDestroyed: report.orphansDestroyed }).toEqual({ pendingRemoved: 0, orphansDestroyed: 0 });
    for (const KeyId of made) {
      const { Signature } = await late.kms.send(new SignCommand({ KeyId, Message: text('m'), SigningAlgorithm: 'RSASSA_PSS_SHA_256' }));
      expect(Signature!.length).toBe(256);
    }
  });
});
