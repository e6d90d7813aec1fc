import { CreateKeyCommand, DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModule } from '../../src/hsm/module.js';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { SOFTHSM_MODULE } from '../helpers/softhsm.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const encrypt = (KeyId: string) => h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x') }));

/** The daemon's own module instance: PKCS#11 state is per process, so this is what it uses. */
function tokenSlot() {
  const p = loadModule(SOFTHSM_MODULE).pkcs11;
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === h.token.label)!;
  return { p, slot };
}

async function ready(): Promise<{ status: number; body: { token: { state: string; recoveries: number } } }> {
  const res = await fetch(`${h.endpoint}/health/ready`);
  return { status: res.status, body: (await res.json()) as { token: { state: string; recoveries: number } } };
}

describe('key material cannot leave the token', () => {
  it('every object the daemon created is token, private, sensitive, non-extractable, non-modifiable; CKA_VALUE and wrapping fail', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!);
    const objects = inspectToken(h.token);
    for (const id of ids) {
      expect(objects.some((o) => o.label.startsWith(`p11kms:${id}:`))).toBe(true);
    }
    expect(objects.length).toBeGreaterThanOrEqual(3);
    for (const o of objects) {
      expect(o).toMatchObject({
        token: true, priv: true, sensitive: true, extractable: false, modifiable: false, neverExtractable: true,
      });
      expect(o.valueRead).toBe('CKR_ATTRIBUTE_SENSITIVE');
      expect(o.wrapped).not.toBe('WRAPPED');
    }
  });
});

describe('recovery without restart', () => {
  // Every session closed under the daemon (an HA failover) is test/e2e/hsm-faults.test.ts, through the emulator.

  it('answers 5xx while the token refuses login, and recovers with backoff when it accepts it again', async () => {
    const key = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const { p, slot } = tokenSlot();
    const tempPin = `${h.token.userPin}-rotated`;
    const s = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    try {
      p.C_Login(s, pkcs11js.CKU_USER, h.token.userPin);
    } catch (e) {
      if ((e as { code?: number }).code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw e;
    }
    p.C_SetPIN(s, h.token.userPin, tempPin);
    p.C_CloseAllSessions(slot); // the daemon is logged out and its PIN no longer works

    const e = await failure(encrypt(key));
    expect(['DependencyTimeoutException', 'KMSInternalException']).toContain(e.name);
    expect(e.$metadata?.httpStatusCode).toBeGreaterThanOrEqual(500);
    expect(e.message).not.toContain(h.token.userPin);
    expect((await ready()).status).toBe(503);

    // Put the PIN back (the module may have been re-initialized by the daemon's backoff: look the slot up again).
    const again = tokenSlot();
    const s2 = again.p.C_OpenSession(again.slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    again.p.C_Login(s2, pkcs11js.CKU_USER, tempPin);
    again.p.C_SetPIN(s2, tempPin, h.token.userPin);
    again.p.C_Logout(s2);
    again.p.C_CloseSession(s2);

    const deadline = Date.now() + 15_000;
    while ((await ready()).status !== 200) {
      if (Date.now() > deadline) throw new Error('daemon did not recover within 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const ok = await encrypt(key);
    expect(ok.CiphertextBlob!.length).toBeGreaterThan(0);
  });
});
