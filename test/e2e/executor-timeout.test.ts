// The worker-thread path's per-call timeout (src/hsm/executor.ts): a hung token call on a
// software-token profile fails with 503 within the timeout, the stuck worker is retired, calls
// queued behind it run on a fresh worker, and the token serves normally once the module returns.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Token } from '../../src/hsm/token.js';
import { silentLogger } from '../../src/log.js';
import { Secret } from '../../src/secret.js';
import { createEmulator, type Emulator } from '../helpers/emulator.js';
import { createTempToken, type TempToken } from '../helpers/softhsm.js';

const TIMEOUT_MS = 500;
let t: TempToken;
let em: Emulator;
let token: Token;
const id = Buffer.alloc(20, 7);

beforeAll(async () => {
  t = createTempToken();
  em = createEmulator(t.dir);
  token = Token.open(
    {
      module: em.module, tokenLabel: t.label, pin: new Secret(t.userPin), maxSessions: 6, sessionWaitMs: 5000, maxWaiters: 100,
      capabilities: { softwareToken: true }, workerThreads: 1, callTimeoutMs: TIMEOUT_MS,
    },
    silentLogger,
  );
  await token.generateAesKey(id, 'p11kms:executor-timeout-test:v1');
});
afterAll(() => {
  token?.close();
  t?.cleanup();
});

describe('a hung call on a worker thread', () => {
  it('fails with DependencyTimeoutException within the timeout; queued calls and later calls succeed', async () => {
    const iv = randomBytes(12);
    const before = await token.encryptGcm(id, iv, Buffer.from('aad'), Buffer.from('before'));
    em.set({ hang_until: Date.now() + 2500, hang_functions: 'C_Encrypt' });
    const started = Date.now();
    // Several calls at once: one is stuck in the module, the others wait in the same worker's lanes.
    const calls = Array.from({ length: 4 }, (_, i) => token.encryptGcm(id, randomBytes(12), Buffer.from('aad'), Buffer.from(`during ${i}`)).then(
      () => 'ok',
      (e: Error & { code?: string }) => (e as { code?: string }).code ?? e.name,
    ));
    const outcomes = await Promise.all(calls);
    expect(outcomes).toContain('DependencyTimeoutException');
    // Bounded: the stuck one fails near the timeout, not when the module finally returns.
    expect(Date.now() - started).toBeLessThan(2500);
    expect(em.log().join('\n')).toContain('fault hang C_Encrypt');
    em.set({});
    await new Promise((r) => setTimeout(r, 2600 - (Date.now() - started)));
    const after = await token.decryptGcm(id, iv, Buffer.from('aad'), before);
    expect(after.toString()).toBe('before');
    const again = await token.encryptGcm(id, iv, Buffer.from('aad'), Buffer.from('before'));
    expect(again.equals(before)).toBe(true);
  });
});
