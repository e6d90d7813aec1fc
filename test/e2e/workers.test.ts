import { CreateKeyCommand, DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client } from '../helpers/daemon.js';
import { startNode, until, type ClusterNode } from '../helpers/cluster.js';
import { sharedPgCluster } from '../helpers/postgres.js';
import { createTempToken, type TempToken } from '../helpers/softhsm.js';

/** database.workers: one supervisor, two worker daemons behind one port, one database, one token. */

let token: TempToken;
let node: ClusterNode;

beforeAll(async () => {
  token = createTempToken();
  node = await startNode({ token, databaseUrl: sharedPgCluster().createDatabase('workers'), id: 'host', env: { P11KMS_WORKERS: '2' } });
}, 90_000);

afterAll(async () => {
  await node?.kill('SIGTERM');
  token?.cleanup();
});

describe('several worker processes on one host', () => {
  it('both workers serve the one port, each as a node with its own audit chain; SIGTERM stops them all', async () => {
    await until(async () => (node.output().match(/"msg":"p11kms listening"/g) ?? []).length === 2, 30_000, 50);
    const ports = new Set(node.output().split('\n').filter((l) => l.includes('p11kms listening')).map((l) => JSON.parse(l).port as number));
    expect(ports).toEqual(new Set([node.port]));
    const { KeyMetadata } = await node.kms.send(new CreateKeyCommand({}));
    // New connections are handed out round-robin: fresh clients reach both workers.
    for (let i = 0; i < 12; i++) {
      const kms = client(node.endpoint);
      const { CiphertextBlob } = await kms.send(new EncryptCommand({ KeyId: KeyMetadata!.KeyId, Plaintext: new TextEncoder().encode(`m${i}`) }));
      await kms.send(new DecryptCommand({ CiphertextBlob }));
      kms.destroy();
    }
    const audit = join(node.dataDir, 'audit');
    const encryptsOf = (worker: string) => {
      const dir = join(audit, worker);
      if (!existsSync(dir)) return 0;
      return readdirSync(dir).flatMap((f) => readFileSync(join(dir, f), 'utf8').trim().split('\n'))
        .filter((l) => l.includes('"eventName":"Encrypt"') && l.includes(`"nodeId":"${worker}"`)).length;
    };
    await until(async () => encryptsOf('host-w1') > 0 && encryptsOf('host-w2') > 0, 10_000, 50);
    expect(encryptsOf('host-w1') + encryptsOf('host-w2')).toBe(12);
    await node.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  });
});
