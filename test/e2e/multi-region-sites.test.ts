import {
  CreateKeyCommand, DecryptCommand, DescribeKeyCommand, EncryptCommand, KMSClient, ReplicateKeyCommand, RotateKeyOnDemandCommand,
  UpdatePrimaryRegionCommand,
} from '@aws-sdk/client-kms';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCredentialsCli } from '../../src/cli/credentials.js';
import { runPeerKeyCli } from '../../src/cli/peer-keys.js';
import { PeerClient } from '../../src/api/peer/client.js';
import { systemClock } from '../../src/clock.js';
import { Secret } from '../../src/secret.js';
import { ADMIN, failure, startHarness, type Harness } from '../helpers/daemon.js';
import { addToken, SOFTHSM_MODULE, type ExtraToken } from '../helpers/softhsm.js';

/**
 * Two sites (issue 13, part 4): site A (this process, us-east-1, token A, data dir A) and site
 * B (a child process running the built daemon, eu-west-1, token B, data dir B). Each issued
 * SigV4 credentials to the other; each token's SO trusts the other's receive key. Multi-Region
 * material goes A → B only wrapped by the trusted key, through the replication protocol.
 */
const ROOT = resolve(import.meta.dirname, '../..');
let a: Harness;
let tokenB: ExtraToken;
let b: ChildProcess | undefined;
let bOutput = '';
let bEnv: Record<string, string>;
let bPort = 0;
let east: KMSClient;
let west: KMSClient;
const plaintext = Buffer.from('two sites, one key');
const quiet = { out: () => undefined, err: () => undefined };

async function startB(extra: Record<string, string> = {}): Promise<void> {
  bOutput = '';
  const child = spawn(process.execPath, [join(ROOT, 'dist/entry.cjs')], { env: { ...bEnv, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
  b = child;
  const collect = (d: Buffer) => (bOutput += d.toString());
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const deadline = Date.now() + 20_000;
  while (!/"msg":"p11kms listening"/.test(bOutput)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`site B did not start:\n${bOutput}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  bPort = JSON.parse(bOutput.split('\n').find((l) => l.includes('p11kms listening'))!).port;
  west = new KMSClient({ endpoint: `http://127.0.0.1:${bPort}`, region: 'eu-west-1', credentials: ADMIN, maxAttempts: 1 });
}

async function stopB(): Promise<void> {
  if (!b || b.exitCode !== null) return;
  const exited = new Promise((r) => b!.once('exit', r));
  b.kill('SIGTERM');
  await exited;
}

async function issue(socket: string, user: string): Promise<{ AccessKeyId: string; SecretAccessKey: string }> {
  let out = '';
  const code = await runCredentialsCli(['create', '--user', user, '--socket', socket], {}, { out: (s) => (out += s), err: () => undefined });
  expect(code).toBe(0);
  return JSON.parse(out);
}

/** One scheduler tick of site A: pushes what its replicas lack. */
const tickA = () => a.daemon.scheduler.runOnce();
const auditText = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.jsonl') || f.includes('audit')).map((f) => {
  try {
    return readFileSync(join(dir, f), 'utf8');
  } catch {
    return '';
  }
}).join('\n');

beforeAll(async () => {
  let socketA = '';
  let principalsA: Record<string, string> = {};
  a = await startHarness({
    prepare: (t) => {
      tokenB = addToken(t, 'p11kms-site-b');
      socketA = join(t.dir, 'a.sock');
      bEnv = {
        PATH: process.env.PATH ?? '', SOFTHSM2_CONF: t.conf, P11KMS_DATA_DIR: join(t.dir, 'data-b'), P11KMS_PORT: '0', P11KMS_REGION: 'eu-west-1',
        P11KMS_PKCS11_MODULE: SOFTHSM_MODULE, P11KMS_TOKEN_LABEL: tokenB.label, P11KMS_PIN: tokenB.userPin,
        P11KMS_SOCKET: join(t.dir, 'b.sock'), P11KMS_LOG_LEVEL: 'info', P11KMS_SCHEDULER_INTERVAL_MS: '3600000',
        P11KMS_PEER_PRINCIPALS: 'arn:aws:iam::111122223333:user/peer-site-a',
      };
      const envA = { P11KMS_PKCS11_MODULE: SOFTHSM_MODULE, P11KMS_TOKEN_LABEL: t.label, P11KMS_PIN: t.userPin, P11KMS_DATA_DIR: join(t.dir, 'data') };
      // The SO step on each side: trust the other token's receive key.
      const keyA = join(t.dir, 'a.pem');
      const keyB = join(t.dir, 'b.pem');
      expect(runPeerKeyCli(['export-receive-key', '--out', keyA], envA, quiet)).toBe(0);
      expect(runPeerKeyCli(['export-receive-key', '--out', keyB], bEnv, quiet)).toBe(0);
      expect(runPeerKeyCli(['trust', '--peer-region', 'eu-west-1', '--public-key', keyB], { ...envA, P11KMS_SO_PIN: t.soPin }, quiet)).toBe(0);
      expect(runPeerKeyCli(['trust', '--peer-region', 'us-east-1', '--public-key', keyA], { ...bEnv, P11KMS_SO_PIN: tokenB.soPin }, quiet)).toBe(0);
      principalsA = { P11KMS_SOCKET: socketA, P11KMS_PEER_PRINCIPALS: 'arn:aws:iam::111122223333:user/peer-site-b' };
      return principalsA;
    },
  });
  // A issues B its credentials; B starts knowing A and issues A its own; A restarts knowing B.
  const forB = await issue(socketA, 'peer-site-b');
  bEnv.P11KMS_PEERS = JSON.stringify({ 'us-east-1': { endpoint: a.endpoint, accessKeyId: forB.AccessKeyId, secretAccessKey: { env: 'PEER_SECRET' } } });
  bEnv.PEER_SECRET = forB.SecretAccessKey;
  await startB();
  bEnv.P11KMS_PORT = String(bPort);
  const forA = await issue(bEnv.P11KMS_SOCKET!, 'peer-site-a');
  const portA = new URL(a.endpoint).port;
  await a.daemon.stop();
  const { startDaemon } = await import('../../src/daemon.js');
  const { silentLogger } = await import('../../src/log.js');
  const { testConfig } = await import('../helpers/daemon.js');
  const config = testConfig(a.token, {
    ...principalsA, P11KMS_PORT: portA, PEER_SECRET: forA.SecretAccessKey,
    P11KMS_PEERS: JSON.stringify({ 'eu-west-1': { endpoint: `http://127.0.0.1:${bPort}`, accessKeyId: forA.AccessKeyId, secretAccessKey: { env: 'PEER_SECRET' } } }),
  });
  a = { ...a, config, daemon: await startDaemon(config, silentLogger) };
  east = new KMSClient({ endpoint: a.endpoint, region: 'us-east-1', credentials: ADMIN, maxAttempts: 1 });
}, 90_000);

afterAll(async () => {
  await stopB();
  await a?.stop();
});

describe('two sites', () => {
  let keyId: string;
  let v1: Uint8Array;

  it('ReplicateKey to the peer\'s region: the replica is created there, from material wrapped token to token', async () => {
    keyId = (await east.send(new CreateKeyCommand({ MultiRegion: true, Description: 'site A' }))).KeyMetadata!.KeyId!;
    v1 = (await east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    const r = await east.send(new ReplicateKeyCommand({ KeyId: keyId, ReplicaRegion: 'eu-west-1', Description: 'site B' }));
    expect(r.ReplicaKeyMetadata).toMatchObject({ KeyState: 'Enabled', Arn: `arn:aws:kms:eu-west-1:111122223333:key/${keyId}`, Description: 'site B' });
    const atB = (await west.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata;
    expect(atB?.MultiRegionConfiguration).toMatchObject({ MultiRegionKeyType: 'REPLICA', PrimaryKey: { Region: 'us-east-1' } });
    expect(Buffer.from((await west.send(new DecryptCommand({ CiphertextBlob: v1 }))).Plaintext!)).toEqual(plaintext);
    const w = (await west.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: w }))).Plaintext!)).toEqual(plaintext);
  });

  it('rotation of the primary reaches the replica at the other site', async () => {
    await east.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
    const w2 = (await west.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(w2).readUInt32BE(17)).toBe(2);
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: w2 }))).Plaintext!)).toEqual(plaintext);
  });

  it('peer down during ReplicateKey: the replica is Creating, and is created when the peer is back', async () => {
    const k = (await east.send(new CreateKeyCommand({ MultiRegion: true }))).KeyMetadata!.KeyId!;
    await stopB();
    const r = await east.send(new ReplicateKeyCommand({ KeyId: k, ReplicaRegion: 'eu-west-1' }));
    expect(r.ReplicaKeyMetadata?.KeyState).toBe('Creating');
    expect((await east.send(new DescribeKeyCommand({ KeyId: k }))).KeyMetadata?.MultiRegionConfiguration?.ReplicaKeys?.map((x) => x.Region)).toEqual(['eu-west-1']);
    await tickA(); // still down: retried, nothing half done
    await startB();
    expect((await failure(west.send(new DescribeKeyCommand({ KeyId: k })))).name).toBe('NotFoundException');
    await tickA();
    expect((await west.send(new DescribeKeyCommand({ KeyId: k }))).KeyMetadata?.KeyState).toBe('Enabled');
    const blob = (await east.send(new EncryptCommand({ KeyId: k, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from((await west.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!)).toEqual(plaintext);
  });

  it('UpdatePrimaryRegion to the peer\'s region; the new primary\'s rotation comes back', async () => {
    await east.send(new UpdatePrimaryRegionCommand({ KeyId: keyId, PrimaryRegion: 'eu-west-1' }));
    expect((await west.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.MultiRegionConfiguration?.MultiRegionKeyType).toBe('PRIMARY');
    expect((await east.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.MultiRegionConfiguration?.MultiRegionKeyType).toBe('REPLICA');
    await west.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
    const e3 = (await east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(e3).readUInt32BE(17)).toBe(3);
    expect(Buffer.from((await west.send(new DecryptCommand({ CiphertextBlob: e3 }))).Plaintext!)).toEqual(plaintext);
  });

  it('only the peer\'s credentials may call the peer protocol', async () => {
    // Signed correctly, but by a principal that is not a peer (the account root of site B).
    const notPeer = new PeerClient({ 'eu-west-1': { endpoint: `http://127.0.0.1:${bPort}`, accessKeyId: ADMIN.accessKeyId, secretAccessKey: new Secret(ADMIN.secretAccessKey) } }, systemClock);
    const e = await failure(notPeer.call('eu-west-1', 'PeerCopyDeleted', { KeyId: keyId, Region: 'us-east-1' }));
    expect(e.name).toBe('AccessDeniedException');
    expect((await west.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.MultiRegionConfiguration?.ReplicaKeys?.map((x) => x.Region)).toEqual(['us-east-1']);
  });

  it('every step is in both sites\' audit trails', async () => {
    await a.daemon.audit?.close();
    const trailA = auditText(join(a.config.dataDir, 'audit'));
    const trailB = auditText(join(bEnv.P11KMS_DATA_DIR!, 'audit'));
    for (const e of ['"ReplicateKey"', '"ReplicateKeyToPeer"', '"UpdatePrimaryRegion"', '"PeerSyncReplica"']) expect(trailA).toContain(e);
    for (const e of ['"PeerSyncReplica"', '"CreateKey"', '"ReplicateKeyToPeer"', '"PeerSetView"']) expect(trailB).toContain(e);
  });
});
