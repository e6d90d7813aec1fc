import { CreateKeyCommand, DecryptCommand, EncryptCommand, type KMSClient } from '@aws-sdk/client-kms';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, startNodes, stopNodes, until, type ClusterNode } from '../helpers/cluster.js';
import { haproxyVersion, startHaproxy, type Haproxy } from '../helpers/haproxy.js';
import type { TempToken } from '../helpers/softhsm.js';
import { devTls, httpsClient, type DevTls } from '../helpers/tls.js';

/**
 * Three nodes (one PostgreSQL database, one token, TLS on each) behind a real HAProxy running the
 * configuration docs/high-availability.md shows, with the real AWS SDK pointed only at HAProxy:
 * requests spread over the nodes; a node killed with SIGKILL under load is marked down by the
 * health check while the clients (the SDK's default retries) keep succeeding; restarted on its
 * port, it is marked up again and serves. Timings are logged, never asserted.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const DB = 'cluster_haproxy';
const VERSION = haproxyVersion();
if (!VERSION) console.warn('cluster-haproxy: SKIPPED, haproxy is not installed (./scripts/setup installs Debian\'s haproxy when run as root)');

/** The documented configuration, with only what differs here replaced (each must occur exactly once). */
function documentedConfig(replacements: [string, string][]): string {
  const doc = readFileSync(join(ROOT, 'docs/high-availability.md'), 'utf8');
  let config = /<!-- haproxy:tested [^>]*-->\n```haproxy\n([\s\S]*?)\n```/.exec(doc)?.[1];
  if (!config) throw new Error('docs/high-availability.md has no haproxy:tested block');
  for (const [from, to] of replacements) {
    const count = config.split(from).length - 1;
    if (count !== 1) throw new Error(`the documented HAProxy config has '${from}' ${count} times, expected once`);
    config = config.replace(from, to);
  }
  return `${config}\n`;
}

/** Encrypt requests this node served, from its /metrics on its admin Unix socket. */
function encryptsServed(node: ClusterNode): Promise<number> {
  return new Promise((resolveCount, reject) => {
    get({ socketPath: node.socketPath, path: '/metrics' }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        const lines = text.split('\n').filter((l) => l.startsWith('p11kms_requests_total{') && l.includes('operation="Encrypt"'));
        resolveCount(lines.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0));
      });
    }).once('error', reject);
  });
}

interface Call {
  start: number;
  end: number;
  attempts: number;
  error?: string;
}

let tls: DevTls;
let token: TempToken;
let url: string;
let nodes: ClusterNode[] = [];
let dir: string;
let lb: Haproxy;
let kms: () => KMSClient;
let keyId: string;
let stop = false; // ends the load, also when the test failed half-way

const ms = (x: number) => `${Math.round(x)} ms`;
const serverStatus = async (id: string) => (await lb.stat()).find((r) => r.pxname === 'p11kms' && r.svname === id)?.status ?? 'missing';
const tlsEnv = () => ({ P11KMS_TLS_CERT: tls.files.cert, P11KMS_TLS_KEY: tls.files.key });

describe.skipIf(!VERSION)(`three nodes behind HAProxy ${VERSION ?? '(not installed)'}`, () => {
  beforeAll(async () => {
    tls = devTls();
    ({ token, url, nodes } = await startNodes(DB, tlsEnv()));
    dir = mkdtempSync(join(tmpdir(), 'p11kms-haproxy-'));
    lb = await startHaproxy(dir, (port, statsSocket) =>
      documentedConfig([
        ['/run/haproxy/p11kms.sock', statsSocket],
        ['bind :443', `bind 127.0.0.1:${port}`],
        ['/etc/p11kms/ca.pem', tls.files.ca],
        ...nodes.map((n, i): [string, string] => [`10.0.0.${i + 1}:4599`, `127.0.0.1:${n.port}`]),
      ]),
    );
    // Each application its own client (own keep-alive connections), only ever talking to HAProxy.
    kms = () => httpsClient(`https://localhost:${lb.port}`, tls, undefined, true, 3);
    await until(async () => (await Promise.all(nodes.map((n) => serverStatus(n.id)))).every((s) => s === 'UP'), 15_000, 50);
    keyId = (await kms().send(new CreateKeyCommand({ Description: 'behind haproxy' }))).KeyMetadata!.KeyId!;
  }, 90_000);

  afterAll(async () => {
    stop = true;
    await lb?.stop();
    await stopNodes(nodes, token);
    tls?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('spreads requests over the nodes, fails over when one is killed, and takes it back when it returns', async () => {
    const calls: Call[] = [];
    /** One SDK call, timed, with how many attempts the SDK made (its retries are invisible otherwise). */
    const timed = async <T extends { $metadata: { attempts?: number } }>(send: () => Promise<T>): Promise<T | undefined> => {
      const start = performance.now();
      try {
        const out = await send();
        calls.push({ start, end: performance.now(), attempts: out.$metadata.attempts ?? 1 });
        return out;
      } catch (e) {
        const err = e as Error & { $metadata?: { attempts?: number }; code?: string };
        calls.push({ start, end: performance.now(), attempts: err.$metadata?.attempts ?? 0, error: `${err.name} ${err.code ?? ''} ${err.message}` });
        return undefined;
      }
    };
    const application = async (w: number) => {
      const client = kms();
      for (let i = 0; !stop; i++) {
        const plain = `w${w}-${i}`;
        const enc = await timed(() => client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from(plain) })));
        if (!enc) continue;
        const dec = await timed(() => client.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob! })));
        if (dec) expect(Buffer.from(dec.Plaintext!).toString()).toBe(plain);
      }
    };
    const load = Promise.all([0, 1, 2, 3, 4, 5].map(application));

    // The nodes are UP by the HTTP check over verified TLS (layer 7, status 200), not a bare connect.
    const servers = (await lb.stat()).filter((r) => r.pxname === 'p11kms' && r.svname !== 'BACKEND' && r.svname !== 'FRONTEND');
    expect(servers.map((r) => [r.svname, r.status, r.check_status, r.check_code])).toEqual(nodes.map((n) => [n.id, 'UP', 'L7OK', '200']));

    // Spread: every node serves some of the requests that went to HAProxy.
    await until(async () => (await Promise.all(nodes.map(encryptsServed))).every((n) => n >= 5), 15_000, 50);
    const spread = await Promise.all(nodes.map(encryptsServed));
    console.log(`Encrypt requests served per node through HAProxy: ${nodes.map((n, i) => `${n.id}=${spread[i]}`).join(' ')}`);

    // kill -9 one node under load.
    const victim = nodes[0]!;
    const killedAt = performance.now();
    victim.child.kill('SIGKILL');
    await victim.exited;
    await until(async () => (await serverStatus(victim.id)).startsWith('DOWN'), 15_000, 10);
    const downSeen = performance.now();
    const downLogged = lb.events.find((e) => e.at >= killedAt && e.text.includes(`Server p11kms/${victim.id} is DOWN`));
    // The load goes on a while with the node marked down.
    const servedBefore = await Promise.all(nodes.slice(1).map(encryptsServed));
    await new Promise((r) => setTimeout(r, 1_000));
    const servedAfter = await Promise.all(nodes.slice(1).map(encryptsServed));

    stop = true;
    await load;
    const backend = (await lb.stat()).find((r) => r.pxname === 'p11kms' && r.svname === 'BACKEND')!;

    const after = calls.filter((c) => c.end >= killedAt);
    const failed = calls.filter((c) => c.error);
    const retried = after.filter((c) => !c.error && c.attempts > 1);
    const disturbed = [...failed, ...retried].filter((c) => c.end >= killedAt);
    const lastDisturbed = disturbed.length ? Math.max(...disturbed.map((c) => c.end)) - killedAt : 0;
    const slowest = Math.max(...after.filter((c) => c.start <= downSeen).map((c) => c.end - c.start), 0);
    console.log(
      `haproxy failover: ${calls.length} Encrypt/Decrypt calls by 6 clients, ${after.length} ended after the kill; ` +
        `${failed.length} failed after the SDK's retries, ${retried.length} needed a retry; ` +
        `kill -9 → last retried/failed call ended ${ms(lastDisturbed)}; slowest call started before DOWN ${ms(slowest)}; ` +
        `kill → DOWN in HAProxy's log ${downLogged ? ms(downLogged.at - killedAt) : 'not logged'}, in show stat ${ms(downSeen - killedAt)}; ` +
        `connections HAProxy redispatched ${backend.wredis}, retried ${backend.wretr}`,
    );
    console.log(downLogged?.text.trim());
    if (failed.length) console.log(`failures: ${[...new Set(failed.map((c) => c.error))].join(' | ')}`);

    expect(spread.every((n) => n > 0)).toBe(true);
    // Through HAProxy nothing failed: a call cut by the kill was retried by the SDK and served by another node.
    expect(failed).toEqual([]);
    // With the victim marked down, the survivors carried the load.
    expect(servedAfter.every((n, i) => n > servedBefore[i]!)).toBe(true);

    // Restarted on its port, it is checked up again (rise) and new connections reach it (balancing
    // is per connection in mode tcp: the clients' open keep-alive connections stay where they are).
    const restartedAt = performance.now();
    const back = await startNode({ token, databaseUrl: url, id: victim.id, env: { ...tlsEnv(), P11KMS_PORT: String(victim.port) } });
    nodes[0] = back;
    const listening = performance.now();
    await until(async () => (await serverStatus(back.id)) === 'UP', 15_000, 10);
    const upSeen = performance.now();
    await until(async () => {
      await kms().send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('new connection') }));
      return (await encryptsServed(back)) > 0;
    }, 10_000, 0);
    console.log(`haproxy rise: restart → listening ${ms(listening - restartedAt)}, → UP in show stat ${ms(upSeen - listening)}`);
  });
});
