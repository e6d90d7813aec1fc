import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { AuthenticationFailed, Token, TokenOpenError, type TokenOptions } from '../../src/hsm/token.js';
import type { CapabilitiesInput } from '../../src/hsm/profile.js';
import { silentLogger } from '../../src/log.js';
import { Secret } from '../../src/secret.js';
import { createTempToken, SOFTHSM_MODULE, type TempToken } from '../helpers/softhsm.js';

/**
 * The capability model against a real token (SoftHSM2): the profile is data, the start-up
 * probe checks it against the token, and the GCM IV modes are driven through the real module.
 * SoftHSM2 takes caller IVs only, so the token-IV modes must end in a clear token fault here,
 * never in a stored ciphertext whose IV the daemon does not know; the HSM emulator proves the
 * same modes against modules that do make the IV.
 */
let t: TempToken;
const opened: Token[] = [];
const open = (capabilities: CapabilitiesInput, extra: Partial<TokenOptions> = {}) => {
  const token = Token.open({
    module: SOFTHSM_MODULE, tokenLabel: t.label, pin: new Secret(t.userPin), maxSessions: 4, sessionWaitMs: 5000,
    maxWaiters: 100, capabilities, workerThreads: 0, ...extra,
  }, silentLogger);
  opened.push(token);
  return token;
};
const openError = (capabilities: CapabilitiesInput): TokenOpenError => {
  try {
    open(capabilities);
  } catch (e) {
    return e as TokenOpenError;
  }
  throw new Error('expected Token.open to fail');
};

beforeAll(() => {
  t = createTempToken();
});
afterAll(() => {
  for (const token of opened) token.close();
  t?.cleanup();
});

describe('start-up probe against the profile', () => {
  it('fails start-up naming profile and token when the profile claims a mechanism the token lacks', () => {
    const e = openError({ gcmIv: 'token-prepended', gcmMechanism: '0x80001087' });
    expect(e).toBeInstanceOf(TokenOpenError);
    expect(e.kind).toBe('mechanisms');
    expect(e.message).toMatch(/profile says aead 'aes-gcm' with gcmMechanism 0x80001087/);
    expect(e.message).toContain(`token '${t.label}' does not list vendor mechanism 0x80001087`);
  });

  it('fails when the profile names the RFC 5649 wrap under the number the token does not use', () => {
    const e = openError({ keyWrapPad: 'CKM_AES_KEY_WRAP_KWP' });
    expect(e.message).toMatch(/keyWrapPad CKM_AES_KEY_WRAP_KWP, but token .* lists RFC 5649 key wrap as CKM_AES_KEY_WRAP_PAD \(0x210A\)/);
  });

  it('refuses a profile that contradicts itself before asking the token', () => {
    expect(openError({ gcmIv: 'token-prepended' }).message).toMatch(/contradicts itself.*vendor mechanism/);
    expect(openError({ gcmIv: 'caller', gcmIvBytes: 16 }).message).toMatch(/contradicts itself/);
  });

  it('reads the token limit and keeps the pool under it and under the profile\'s per-application limit', () => {
    const token = open({ maxSessionsPerApplication: 3 });
    expect(token.poolStats().max).toBe(2); // 3 less the persistent login session
    expect(token.facts.mechanisms.size).toBeGreaterThan(10);
  });
});

describe('GCM IV modes through the real module', () => {
  const id = Buffer.from('p11kms-profile-test-key');
  const aad = Buffer.from('aad');

  it("'caller': the daemon's IV is used and comes back with the ciphertext; decrypt with another IV fails", async () => {
    const token = open({});
    await token.generateAesKey(id, 'p11kms:profile-test:v1');
    const { iv, sealed } = await token.seal(id, aad, Buffer.from('caller iv'));
    expect(iv).toHaveLength(12);
    expect(sealed).toHaveLength(9 + 16);
    expect((await token.open(id, token.aeadShape, iv, aad, sealed)).toString()).toBe('caller iv');
    const other = Buffer.from(iv);
    other[0]! ^= 1;
    await expect(token.open(id, token.aeadShape, other, aad, sealed)).rejects.toBeInstanceOf(AuthenticationFailed);
  });

  it("'token-generated' on a module that leaves pIv alone: a token fault, no ciphertext with an unknown IV", async () => {
    const token = open({ gcmIv: 'token-generated', gcmIvBytes: 12 });
    await expect(token.seal(id, aad, Buffer.from('x'))).rejects.toThrow(/did not return the IV it generated/);
    await expect(token.encryptGcm(id, Buffer.alloc(12, 1), aad, Buffer.from('x'))).rejects.toThrow(/chooses its own IVs/);
  });

  it("'token-appended' on a module that does not append: refused by the module or by the length check, never stored", async () => {
    const token = open({ gcmIv: 'token-appended', gcmIvBytes: 16 });
    await expect(token.seal(id, aad, Buffer.from('x'))).rejects.toThrow(/KMSInternal|key store failed|GCM output/i);
  });

  it('decrypt failures are the profile\'s codes: an unlisted code is a token fault, not a bad ciphertext', async () => {
    const strict = open({ decryptFailure: ['CKR_ENCRYPTED_DATA_INVALID'] }); // SoftHSM 2.6.1 answers CKR_GENERAL_ERROR
    const { iv, sealed } = await strict.seal(id, aad, Buffer.from('y'));
    const tampered = Buffer.from(sealed);
    tampered[0]! ^= 1;
    const e = await strict.open(id, strict.aeadShape, iv, aad, tampered).catch((x: unknown) => x);
    expect(e).not.toBeInstanceOf(AuthenticationFailed);
    expect((e as Error).message).toMatch(/key store failed the operation \(CKR_GENERAL_ERROR\)/);
  });
});

describe('AES-CBC + HMAC-SHA-256 (tokens without GCM)', () => {
  it('two token keys under one id; sealed = ciphertext ‖ 32-byte tag over header, IV and ciphertext; any change fails', async () => {
    const token = open({ aead: 'aes-cbc-hmac-sha256' });
    const id = Buffer.from('p11kms-profile-cbc-key');
    await token.generateAesKey(id, 'p11kms:profile-cbc:v1');
    expect(token.aeadShape).toEqual({ scheme: 'aes-cbc-hmac-sha256', ivBytes: 16 });
    const aad = Buffer.from('header and context');
    for (const n of [0, 15, 16, 4096]) {
      const pt = Buffer.alloc(n, 7);
      const { iv, sealed } = await token.seal(id, aad, pt);
      expect(sealed).toHaveLength((Math.floor(n / 16) + 1) * 16 + 32);
      expect(await token.open(id, token.aeadShape, iv, aad, sealed)).toEqual(pt);
      for (const change of ['iv', 'ct', 'tag', 'aad'] as const) {
        const [i2, s2, a2] = [Buffer.from(iv), Buffer.from(sealed), Buffer.from(aad)];
        if (change === 'iv') i2[3]! ^= 1;
        if (change === 'ct') s2[0]! ^= 1;
        if (change === 'tag') s2[s2.length - 1]! ^= 1;
        if (change === 'aad') a2[0]! ^= 1;
        await expect(token.open(id, token.aeadShape, i2, a2, s2), change).rejects.toBeInstanceOf(AuthenticationFailed);
      }
    }
    // A GCM-shaped value is not opened by a CBC + HMAC token.
    await expect(token.open(id, { scheme: 'aes-gcm', ivBytes: 12 }, Buffer.alloc(12), aad, Buffer.alloc(32))).rejects.toBeInstanceOf(AuthenticationFailed);
  });
});

describe('native-config profiles', () => {
  it('every profile is valid configuration (it starts as far as configuration goes)', () => {
    const dir = resolve(import.meta.dirname, '../../native-config');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const f of files) {
      const json = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { $comment: string };
      expect(json.$comment, f).not.toMatch(/do not start|not implemented|NOT USABLE/i);
      const config = loadConfig({ P11KMS_CONFIG: join(dir, f), P11KMS_PIN: 'x', P11KMS_DATA_DIR: t.dir });
      expect(config.hsm.capabilities.aead, f).toMatch(/^aes-(gcm|cbc-hmac-sha256)$/);
    }
  });
});
