// Token faults through the HSM emulator (test/emulator) in front of SoftHSM2, with the real daemon:
// during a fault requests get a clear 5xx and never hang; afterwards the daemon recovers by itself,
// without a restart. Faults are commanded live by rewriting the emulator's configuration.
import { CreateKeyCommand, DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEmulator, type Emulator } from '../helpers/emulator.js';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';

/** Far longer than any bound the daemon promises: a request still open by then has hung. */
const HANG_DETECTOR_MS = 20_000;
const CALL_TIMEOUT_MS = 1000;

let h: Harness;
let em: Emulator;
let keyId: string;
beforeAll(async () => {
  h = await startHarness({
    env: { P11KMS_TOKEN_CALL_TIMEOUT_MS: String(CALL_TIMEOUT_MS) },
    prepare: (token) => {
      em = createEmulator(token.dir);
      return { P11KMS_PKCS11_MODULE: em.module };
    },
  });
  keyId = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
});
afterAll(async () => {
  await h?.stop();
});
beforeEach(() => em.set({}));

const encrypt = () =>
  h.kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('during a fault') }), { abortSignal: AbortSignal.timeout(HANG_DETECTOR_MS) });

async function ready(): Promise<{ status: number; state: string; recoveries: number }> {
  const res = await fetch(`${h.endpoint}/health/ready`);
  const body = (await res.json()) as { token: { state: string; recoveries: number } };
  return { status: res.status, ...body.token };
}

/** Encrypt until it works again (the daemon's own recovery; no restart), or fail after the bound. */
async function recovers(boundMs = 15_000): Promise<void> {
  const until = Date.now() + boundMs;
  for (;;) {
    try {
      const out = await encrypt();
      const back = await h.kms.send(new DecryptCommand({ CiphertextBlob: out.CiphertextBlob }));
      expect(Buffer.from(back.Plaintext!).toString()).toBe('during a fault');
      return;
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

describe('faults through the emulator', () => {
  it('CKR_DEVICE_ERROR on every call: 503 DependencyTimeoutException, then recovery once the device answers', async () => {
    await encrypt();
    em.set({ device_error_rate: 1, device_error_functions: 'C_Encrypt,C_Decrypt' });
    const e = await failure(encrypt());
    expect(e.$metadata?.httpStatusCode).toBeGreaterThanOrEqual(500);
    expect(['DependencyTimeoutException', 'KMSInternalException']).toContain(e.name);
    em.set({});
    await recovers();
  });

  it('HA failover (every open session invalid, logged out): transparent, the daemon logs in again and retries once', async () => {
    const old = await encrypt();
    const before = (await ready()).recoveries;
    em.set({ failover: Date.now() });
    await encrypt(); // the session loss is retried once on a fresh session
    expect(em.log()).toContain('event failover: all sessions closed');
    const back = await h.kms.send(new DecryptCommand({ CiphertextBlob: old.CiphertextBlob }));
    expect(Buffer.from(back.Plaintext!).toString()).toBe('during a fault');
    const after = await ready();
    expect(after.recoveries).toBe(before + 1);
    expect(after.status).toBe(200);
  });

  it('token not present for 3 s: 503s and readiness 503 while it is away, recovery by itself afterwards', async () => {
    await encrypt();
    em.set({ token_absent_until: Date.now() + 3000 });
    const e = await failure(encrypt());
    expect(e.$metadata?.httpStatusCode).toBe(503);
    expect(e.name).toBe('DependencyTimeoutException');
    expect((await ready()).status).toBe(503);
    await recovers();
    expect((await ready()).status).toBe(200);
  });

  it('a token call that hangs past the per-call timeout: 503 within the timeout, the daemon keeps serving after', async () => {
    await encrypt();
    em.set({ hang_until: Date.now() + 4000 });
    const started = Date.now();
    const e = await failure(encrypt());
    expect(e.name).toBe('DependencyTimeoutException');
    expect(e.$metadata?.httpStatusCode).toBe(503);
    expect(Date.now() - started).toBeLessThan(HANG_DETECTOR_MS);
    expect(em.log()).toContain('fault hang C_Encrypt');
    await recovers();
  });
});
