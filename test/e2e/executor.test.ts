import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationFailed, Token } from '../../src/hsm/token.js';
import { silentLogger } from '../../src/log.js';
import { Secret } from '../../src/secret.js';
import { createTempToken, SOFTHSM_MODULE, type TempToken } from '../helpers/softhsm.js';

// AES-GCM runs on worker threads by default (src/hsm/executor.ts); workerThreads 0 keeps the
// event loop + libuv path. Both must be interchangeable.
let t: TempToken;
let onWorkers: Token;
let onLoop: Token;
/** One worker, more sessions than its lanes: calls queue for a lane and are started as lanes free. */
let oneWorker: Token;
const id = Buffer.alloc(20, 9);

beforeAll(async () => {
  t = createTempToken();
  const opts = {
    module: SOFTHSM_MODULE, tokenLabel: t.label, pin: new Secret(t.userPin), maxSessions: 4, sessionWaitMs: 5000,
    maxWaiters: 1000, modifiableFalse: true,
  };
  onWorkers = Token.open({ ...opts, workerThreads: 2 }, silentLogger);
  onLoop = Token.open({ ...opts, workerThreads: 0 }, silentLogger);
  oneWorker = Token.open({ ...opts, maxSessions: 12, workerThreads: 1 }, silentLogger);
  await onWorkers.generateAesKey(id, 'p11kms:executor-test:v1');
});
afterAll(() => {
  onWorkers?.close();
  onLoop?.close();
  oneWorker?.close();
  t?.cleanup();
});

describe('token calls on worker threads', () => {
  it('produce what the event-loop path opens, and the other way round, under concurrency', async () => {
    const jobs = Array.from({ length: 64 }, (_, i) => ({ iv: randomBytes(12), aad: randomBytes(i * 40), pt: randomBytes(1 + i * 60) }));
    const sealed = await Promise.all(jobs.map((j, i) => (i % 2 ? onWorkers : onLoop).encryptGcm(id, j.iv, j.aad, j.pt)));
    const opened = await Promise.all(jobs.map((j, i) => (i % 2 ? onLoop : onWorkers).decryptGcm(id, j.iv, j.aad, sealed[i]!)));
    opened.forEach((p, i) => expect(p.equals(jobs[i]!.pt)).toBe(true));
  });

  it('queue for a lane when one worker has more calls than lanes, and answer each its own', async () => {
    const jobs = Array.from({ length: 48 }, (_, i) => ({ iv: randomBytes(12), aad: randomBytes(i), pt: randomBytes(1 + i * 7) }));
    const sealed = await Promise.all(jobs.map((j) => oneWorker.encryptGcm(id, j.iv, j.aad, j.pt)));
    const opened = await Promise.all(jobs.map((j, i) => (i % 3 ? oneWorker : onLoop).decryptGcm(id, j.iv, j.aad, sealed[i]!)));
    opened.forEach((p, i) => expect(p.equals(jobs[i]!.pt)).toBe(true));
  });

  it('report a failed tag as AuthenticationFailed, like the event-loop path', async () => {
    const iv = randomBytes(12);
    const sealed = await onWorkers.encryptGcm(id, iv, Buffer.from('aad'), Buffer.from('secret'));
    for (const tok of [onWorkers, onLoop, oneWorker]) {
      await expect(tok.decryptGcm(id, iv, Buffer.from('other'), sealed)).rejects.toBeInstanceOf(AuthenticationFailed);
    }
  });
});
