import {
  CreateAliasCommand, CreateGrantCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand, DisableKeyCommand, EnableKeyRotationCommand, EncryptCommand,
  GetKeyPolicyCommand, ListKeyRotationsCommand, PutKeyPolicyCommand, RevokeGrantCommand, RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand, TagResourceCommand, ListResourceTagsCommand,
} from '@aws-sdk/client-kms';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from '../../src/cli/credentials.js';
import { ACCOUNT, client, failure } from '../helpers/daemon.js';
import { blockFileWrites, leaderOf, startNodes, stopNodes, until, type ClusterNode } from '../helpers/cluster.js';
import { sharedPgCluster } from '../helpers/postgres.js';
import { SOFTHSM_MODULE, type TempToken } from '../helpers/softhsm.js';

const ROOT = resolve(import.meta.dirname, '../..');

/**
 * Three daemons (child processes) on one PostgreSQL database and one SoftHSM2 token directory:
 * what one node creates the others use at once; what takes rights away reaches every node
 * within the propagation bound; conflicting writes end as AWS ends them; background jobs run
 * on the leader only, and a leader killed with SIGKILL is replaced.
 */

const DB = 'cluster_three_nodes';
let token: TempToken;
let url: string;
let nodes: ClusterNode[] = [];
const pg = () => sharedPgCluster();

beforeAll(async () => {
  // Ticks every 500 ms: a deletion made due after the leader is killed is not left to a 60 s tick.
  ({ token, url, nodes } = await startNodes(DB, { P11KMS_SCHEDULER_INTERVAL_MS: '500' }));
}, 90_000);

afterAll(() => stopNodes(nodes, token));

const [a, b, c] = [() => nodes[0]!, () => nodes[1]!, () => nodes[2]!];
/** The node whose trail could not be written for a while (fail-closed test): its chain must still verify. */
let brokenTrail: string | undefined;
const text = (s: string) => new TextEncoder().encode(s);

describe('three nodes, one database, one token', () => {
  it('applies the schema once, whichever node starts first', () => {
    expect(pg().psql(DB, "SELECT string_agg(version::text, ',' ORDER BY version) FROM p11kms_schema")).toBe('1,2,3,4\n');
  });

  it('a key created on one node encrypts on the second and decrypts on the third at once', async () => {
    for (let i = 0; i < 5; i++) {
      const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
      const { CiphertextBlob } = await b().kms.send(new EncryptCommand({ KeyId: KeyMetadata!.KeyId, Plaintext: text(`m${i}`) }));
      const { Plaintext } = await c().kms.send(new DecryptCommand({ CiphertextBlob }));
      expect(new TextDecoder().decode(Plaintext)).toBe(`m${i}`);
    }
  });

  it("finds a key another node created even when this node's own key creation hid it from SoftHSM2's object list", async () => {
    // SoftHSM 2.6 re-reads the token directory only when its generation file moved since this
    // process last looked, and b's own CreateKey adopts a's move without looking: without the
    // look again (objectList 'per-process', a module reinitialization) b answers KeyUnavailableException.
    for (let i = 0; i < 3; i++) {
      const first = (await a().kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      await b().kms.send(new CreateKeyCommand({}));
      const { CiphertextBlob } = await b().kms.send(new EncryptCommand({ KeyId: first, Plaintext: text(`k${i}`) }));
      expect(new TextDecoder().decode((await a().kms.send(new DecryptCommand({ CiphertextBlob }))).Plaintext)).toBe(`k${i}`);
    }
    expect(b().output()).toMatch(/reinitializing the module to see objects other processes created/);
  });

  it('aliases, tags, policies and grants written on one node are read on the others at once', async () => {
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
    const keyId = KeyMetadata!.KeyId!;
    await b().kms.send(new CreateAliasCommand({ AliasName: 'alias/shared', TargetKeyId: keyId }));
    const { CiphertextBlob } = await c().kms.send(new EncryptCommand({ KeyId: 'alias/shared', Plaintext: text('x') }));
    expect((await a().kms.send(new DecryptCommand({ CiphertextBlob }))).KeyId).toBe(KeyMetadata!.Arn);
    await c().kms.send(new TagResourceCommand({ KeyId: keyId, Tags: [{ TagKey: 'team', TagValue: 'ha' }] }));
    expect((await a().kms.send(new ListResourceTagsCommand({ KeyId: keyId }))).Tags).toEqual([{ TagKey: 'team', TagValue: 'ha' }]);
    const policy = JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Sid: 'root', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: 'kms:*', Resource: '*' }],
    });
    await a().kms.send(new PutKeyPolicyCommand({ KeyId: keyId, PolicyName: 'default', Policy: policy }));
    expect((await b().kms.send(new GetKeyPolicyCommand({ KeyId: keyId }))).Policy).toBe(policy);
  });

  const takeAway: [string, (keyId: string) => Promise<unknown>, string][] = [
    ['DisableKey', (KeyId) => a().kms.send(new DisableKeyCommand({ KeyId })), 'DisabledException'],
    ['ScheduleKeyDeletion', (KeyId) => a().kms.send(new ScheduleKeyDeletionCommand({ KeyId, PendingWindowInDays: 7 })), 'KMSInvalidStateException'],
    ['PutKeyPolicy (Deny kms:Encrypt)', (KeyId) => a().kms.send(new PutKeyPolicyCommand({
      KeyId, PolicyName: 'default', Policy: JSON.stringify({ Version: '2012-10-17', Statement: [
        { Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: 'kms:*', Resource: '*' },
        { Effect: 'Deny', Principal: { AWS: '*' }, Action: 'kms:Encrypt', Resource: '*' },
      ] }),
    })), 'AccessDeniedException'],
  ];
  it.each(takeAway)('%s on one node is refused on every other within the propagation bound', async (what, change, refusal) => {
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
    const KeyId = KeyMetadata!.KeyId!;
    // Warm every node's caches: the change must invalidate them, not merely miss them.
    for (const n of nodes) await n.kms.send(new EncryptCommand({ KeyId, Plaintext: text('warm') }));
    await change(KeyId);
    const took = await Promise.all(
      [b(), c()].map((n) => until(async () => (await failure(n.kms.send(new EncryptCommand({ KeyId, Plaintext: text('x') })))).name === refusal)),
    );
    console.log(`${what} propagation (ms): ${took.map((t) => t.toFixed(1)).join(', ')}`);
    // The bound is structural (notification, else the 200 ms poll, else no cache after 1 s);
    // this generous limit only catches a propagation that never happened.
    for (const t of took) expect(t).toBeLessThan(5000);
  });

  it('a credential and a grant made on one node work on the others; disabling and revoking reach every node', async () => {
    const created = (await adminCall(a().socketPath, 'CreateCredential', { Type: 'user', Name: 'app', AccountId: ACCOUNT })) as {
      AccessKeyId: string; SecretAccessKey: string; PrincipalArn: string;
    };
    const asUser = (n: ClusterNode) => client(n.endpoint, { accessKeyId: created.AccessKeyId, secretAccessKey: created.SecretAccessKey });
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
    const KeyId = KeyMetadata!.KeyId!;
    const { GrantId } = await b().kms.send(new CreateGrantCommand({ KeyId, GranteePrincipal: created.PrincipalArn, Operations: ['Encrypt'] }));
    // A new credential needs its secret unsealed in the token on each node: measured, not instant.
    const learnt = await Promise.all([b(), c()].map((n) => until(async () => !!(await asUser(n).send(new EncryptCommand({ KeyId, Plaintext: text('g') }))))));
    console.log(`new credential usable on the other nodes after (ms): ${learnt.map((t) => t.toFixed(1)).join(', ')}`);
    await c().kms.send(new RevokeGrantCommand({ KeyId, GrantId }));
    const revoked = await Promise.all(
      nodes.map((n) => until(async () => (await failure(asUser(n).send(new EncryptCommand({ KeyId, Plaintext: text('x') })))).name === 'AccessDeniedException')),
    );
    console.log(`RevokeGrant propagation (ms): ${revoked.map((t) => t.toFixed(1)).join(', ')}`);
    // Disabled on one node: refused everywhere (UnrecognizedClientException), within the bound.
    await b().kms.send(new CreateGrantCommand({ KeyId, GranteePrincipal: created.PrincipalArn, Operations: ['Encrypt'] }));
    await adminCall(a().socketPath, 'DisableCredential', { AccessKeyId: created.AccessKeyId });
    const disabled = await Promise.all(
      nodes.map((n) => until(async () => (await failure(asUser(n).send(new EncryptCommand({ KeyId, Plaintext: text('x') })))).name === 'UnrecognizedClientException')),
    );
    console.log(`credential disable propagation (ms): ${disabled.map((t) => t.toFixed(1)).join(', ')}`);
    for (const t of [...revoked, ...disabled]) expect(t).toBeLessThan(5000);
  });

  it('the same alias created on two nodes at once: one succeeds, the other gets AlreadyExistsException', async () => {
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
    for (let i = 0; i < 8; i++) {
      const AliasName = `alias/race-${i}`;
      const results = await Promise.allSettled([a(), b(), c()].map((n) => n.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: KeyMetadata!.KeyId }))));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as Error).name);
      expect(refused).toEqual(['AlreadyExistsException', 'AlreadyExistsException']);
    }
  });

  it('two on-demand rotations of one key on two nodes at once both happen, each version with its token object', async () => {
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
    const KeyId = KeyMetadata!.KeyId!;
    const results = await Promise.allSettled([a(), b()].map((n) => n.kms.send(new RotateKeyOnDemandCommand({ KeyId }))));
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as Error).name);
    // The key's cluster lock serialises them: both rotate, each version with its key material.
    expect(failures).toEqual([]);
    const { Rotations } = await c().kms.send(new ListKeyRotationsCommand({ KeyId }));
    expect(Rotations).toHaveLength(2);
    const versions = pg().psql(DB, `SELECT version || ':' || state FROM key_materials WHERE key_id = '${KeyId}' ORDER BY version`);
    expect(versions.trim().split('\n')).toEqual(['1:active', '2:active', '3:active']);
    for (const n of nodes) {
      const { CiphertextBlob } = await n.kms.send(new EncryptCommand({ KeyId, Plaintext: text('v') }));
      expect((await a().kms.send(new DecryptCommand({ CiphertextBlob }))).KeyId).toBe(KeyMetadata!.Arn);
    }
  });

  it('a named grant created on two nodes at once is one grant (Name idempotency across nodes)', async () => {
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
    const input = {
      KeyId: KeyMetadata!.KeyId, GranteePrincipal: `arn:aws:iam::${ACCOUNT}:user/app`, Operations: ['Decrypt' as const], Name: 'once',
    };
    const ids = await Promise.all(nodes.map((n) => n.kms.send(new CreateGrantCommand(input))));
    expect(new Set(ids.map((r) => r.GrantId)).size).toBe(1);
    expect(pg().psql(DB, `SELECT count(*) FROM grants WHERE key_id = '${KeyMetadata!.KeyId}'`)).toBe('1\n');
  });

  it('a change whose notification was lost is picked up by the poll', async () => {
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
    const KeyId = KeyMetadata!.KeyId!;
    for (const n of nodes) await n.kms.send(new EncryptCommand({ KeyId, Plaintext: text('warm') }));
    // Triggers off (session_replication_role = replica): the change row is written by hand, no NOTIFY.
    pg().psql(DB, `BEGIN; SET LOCAL session_replication_role = replica;
      UPDATE keys SET state = 'Disabled' WHERE key_id = '${KeyId}';
      INSERT INTO p11kms_changes (entity, ref) VALUES ('keys', '${KeyId}'); COMMIT;`);
    const took = await Promise.all(
      nodes.map((n) =>
        until(async () => (await failure(n.kms.send(new EncryptCommand({ KeyId, Plaintext: text('x') })))).name === 'DisabledException'),
      ),
    );
    console.log(`propagation by poll only (ms): ${took.map((t) => t.toFixed(1)).join(', ')}`);
  });
});

describe('fail-closed audit, per node', () => {
  it('a node that cannot write its trail refuses with a 500 and reports not ready; the others keep serving; it recovers by itself', async () => {
    const leader = leaderOf(nodes);
    const broken = nodes.find((n) => n !== leader)!;
    brokenTrail = broken.id;
    const others = nodes.filter((n) => n !== broken);
    const readiness = async (n: ClusterNode) => {
      const r = await fetch(`${n.endpoint}/health/ready`);
      return { status: r.status, audit: ((await r.json()) as { audit: Record<string, unknown> }).audit };
    };
    const { KeyMetadata } = await a().kms.send(new CreateKeyCommand({}));
    const KeyId = KeyMetadata!.KeyId!;
    await broken.kms.send(new EncryptCommand({ KeyId, Plaintext: text('before') }));
    blockFileWrites(broken, true);
    let blockedAt = 0;
    try {
      blockedAt = performance.now();
      // The encryption happened in the token, but its event could not be written: no ciphertext is sent.
      const first = await failure(broken.kms.send(new EncryptCommand({ KeyId, Plaintext: text('x') })));
      expect([first.name, first.$metadata?.httpStatusCode]).toEqual(['KMSInternalException', 500]);
      expect(first.message).toMatch(/audit trail cannot be written/);
      // From then on, refused before any work: a key asked of the broken node is not created.
      const refused = await failure(broken.kms.send(new CreateKeyCommand({ Description: 'refused while the trail is down' })));
      expect([refused.name, refused.$metadata?.httpStatusCode]).toEqual(['KMSInternalException', 500]);
      expect(refused.message).toMatch(/refused without being performed/);
      expect(pg().psql(DB, "SELECT count(*) FROM keys WHERE description = 'refused while the trail is down'")).toBe('0\n');
      // A load balancer takes it out; the others stay in and serve reads, crypto and writes.
      expect(await readiness(broken)).toEqual({ status: 503, audit: { enabled: true, failClosed: true, state: 'failing' } });
      for (const n of others) {
        expect(await readiness(n)).toMatchObject({ status: 200, audit: { state: 'ok' } });
        const { CiphertextBlob } = await n.kms.send(new EncryptCommand({ KeyId, Plaintext: text(`served by ${n.id}`) }));
        const peer = others.find((o) => o !== n)!;
        expect(new TextDecoder().decode((await peer.kms.send(new DecryptCommand({ CiphertextBlob }))).Plaintext)).toBe(`served by ${n.id}`);
        expect((await n.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyState).toBe('Enabled');
      }
      // Past the trail's 1 s retry it still cannot write, and still refuses.
      await new Promise((r) => setTimeout(r, 1100));
      const still = await failure(broken.kms.send(new DescribeKeyCommand({ KeyId })));
      expect([still.name, still.$metadata?.httpStatusCode]).toEqual(['KMSInternalException', 500]);
      expect((await readiness(broken)).status).toBe(503);
    } finally {
      blockFileWrites(broken, false);
    }
    // Writable again: ready again by itself (readiness checks retry the trail; no request needed), then serving.
    const back = await until(async () => (await readiness(broken)).status === 200, 10_000, 50);
    const { CiphertextBlob } = await broken.kms.send(new EncryptCommand({ KeyId, Plaintext: text('after') }));
    expect(new TextDecoder().decode((await others[0]!.kms.send(new DecryptCommand({ CiphertextBlob }))).Plaintext)).toBe('after');
    console.log(`trail blocked for ${(performance.now() - blockedAt - back).toFixed(0)} ms; ready again ${back.toFixed(0)} ms after it was writable`);
  });
});

describe('background jobs on one node', () => {
  it('exactly one node leads; a leader killed with SIGKILL is replaced; a due deletion and a due rotation each happen once', async () => {
    await until(async () => leaderOf(nodes) !== undefined);
    const leaders = nodes.filter((n) => /now the leader/.test(n.output()));
    expect(leaders).toHaveLength(1);
    const leader = leaders[0]!;
    const follower = nodes.find((n) => n !== leader)!;

    const { KeyMetadata } = await follower.kms.send(new CreateKeyCommand({}));
    const KeyId = KeyMetadata!.KeyId!;
    await follower.kms.send(new ScheduleKeyDeletionCommand({ KeyId, PendingWindowInDays: 7 }));
    const rotated = (await follower.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await follower.kms.send(new EnableKeyRotationCommand({ KeyId: rotated, RotationPeriodInDays: 90 }));
    await leader.kill('SIGKILL');
    const killedAt = performance.now();
    // Make the deletion and the rotation due now (the nodes run on the real clock).
    pg().psql(DB, `UPDATE keys SET deletion_date = ${Date.now() - 1000} WHERE key_id = '${KeyId}'`);
    pg().psql(DB, `UPDATE key_rotation SET next_rotation_at = ${Date.now() - 1000} WHERE key_id = '${rotated}'`);
    const survivors = nodes.filter((n) => n !== leader);
    await until(async () => survivors.some((n) => /now the leader/.test(n.output())), 15_000, 20);
    console.log(`leader takeover after SIGKILL: ${(performance.now() - killedAt).toFixed(0)} ms`);
    expect(survivors.filter((n) => /now the leader/.test(n.output()))).toHaveLength(1);
    await until(async () => (await failure(survivors[0]!.kms.send(new DescribeKeyCommand({ KeyId })))).name === 'NotFoundException', 15_000, 50);
    expect(pg().psql(DB, `SELECT count(*) FROM key_deletions WHERE key_id = '${KeyId}'`)).toBe('1\n');
    const deletions = survivors.map((n) => (n.output().match(new RegExp(`"keyId":"${KeyId}"[^\\n]*key deleted|key deleted[^\\n]*"keyId":"${KeyId}"`, 'g')) ?? []).length);
    expect(deletions.reduce((x, y) => x + y, 0)).toBeLessThanOrEqual(1);
    // The due rotation happens once: one AUTOMATIC rotation, however many ticks and leaders ran since.
    const rotations = async () => (await survivors[0]!.kms.send(new ListKeyRotationsCommand({ KeyId: rotated }))).Rotations ?? [];
    await until(async () => (await rotations()).length > 0, 15_000, 50);
    await new Promise((r) => setTimeout(r, 1500)); // three more scheduler ticks
    expect((await rotations()).map((r) => r.RotationType)).toEqual(['AUTOMATIC']);
    expect(pg().psql(DB, `SELECT count(*) FROM key_materials WHERE key_id = '${rotated}'`)).toBe('2\n');
    nodes = survivors.concat(leader);
  });
});

describe('audit with several writers', () => {
  it('every node keeps its own chain with its node id; `p11kms audit verify` checks a directory of all of them, per node', async () => {
    await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
    const trails = join(token.dir, 'trails');
    mkdirSync(trails);
    for (const n of nodes) cpSync(join(n.dataDir, 'audit'), join(trails, n.id), { recursive: true });
    for (const n of nodes) {
      // No empty file either (the writer removes a file it could not start while its trail was blocked).
      for (const f of readdirSync(join(trails, n.id))) expect(readFileSync(join(trails, n.id, f)).length).toBeGreaterThan(0);
      const lines = readdirSync(join(trails, n.id)).flatMap((f) => readFileSync(join(trails, n.id, f), 'utf8').trim().split('\n'));
      expect(lines.length).toBeGreaterThan(2);
      expect(new Set(lines.map((l) => (JSON.parse(l) as { nodeId?: string }).nodeId))).toEqual(new Set([n.id]));
    }
    const { stdout, code } = await new Promise<{ stdout: string; code: number | null }>((resolve) => {
      execFile(process.execPath, [join(ROOT, 'dist/entry.cjs'), 'audit', 'verify', trails], {
        env: { PATH: process.env.PATH, SOFTHSM2_CONF: token.conf, P11KMS_PKCS11_MODULE: SOFTHSM_MODULE, P11KMS_TOKEN_LABEL: token.label,
          P11KMS_PIN_FILE: join(token.dir, 'softhsm', 'user.pin'), P11KMS_DATA_DIR: join(token.dir, 'unused') },
      }, (e, out) => resolve({ stdout: out, code: e ? (e as { code?: number }).code ?? 1 : 0 }));
    });
    for (const n of nodes) expect(stdout).toMatch(new RegExp(`node ${n.id}:\\n[^]*?VERIFIED`));
    expect(code).toBe(0);
    // The node whose trail could not be written for a while: its chain verifies, and says where the gap is.
    const section = (id: string) => stdout.split(/^(?=node )/m).find((part) => part.startsWith(`node ${id}:`)) ?? '';
    expect(section(brokenTrail!)).toMatch(/a write failed[^]*VERIFIED/);
    // Removing a record from one node's trail is found, and named for that node.
    const victim = join(trails, nodes[0]!.id);
    const file = join(victim, readdirSync(victim).sort()[0]!);
    const lines = readFileSync(file, 'utf8').split('\n');
    writeFileSync(file, [...lines.slice(0, 2), ...lines.slice(3)].join('\n'));
    const after = await new Promise<string>((resolve) => {
      execFile(process.execPath, [join(ROOT, 'dist/entry.cjs'), 'audit', 'verify', '--no-token', trails], { env: { PATH: process.env.PATH } }, (_e, out) => resolve(out));
    });
    expect(after).toMatch(new RegExp(`node ${nodes[0]!.id}:\\n[^]*?FAILED`));
  });
});
