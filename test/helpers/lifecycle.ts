import { KMSClient } from '@aws-sdk/client-kms';
import { constants, createCipheriv, createDecipheriv, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { ADMIN, REGION, testConfig, type Harness, type ManualClock } from './daemon.js';

export const DAY = 86_400_000;

/**
 * Moves the daemon's clock and makes the harness's SDK client sign with the same time (the
 * daemon checks SigV4 dates against its own clock).
 */
export function advance(h: Harness, clock: ManualClock, ms: number): void {
  clock.advance(ms);
  syncClock(h, clock);
}

/** Replaces the harness's client with one whose signing clock is offset to the daemon's clock. */
export function syncClock(h: Harness, clock: ManualClock): void {
  h.kms = new KMSClient({
    endpoint: h.endpoint, region: REGION, credentials: ADMIN, maxAttempts: 1,
    systemClockOffset: clock.now().getTime() - Date.now(),
  });
}

/**
 * Stops the daemon and starts it again on the same token, data directory and clock (with extra
 * environment settings if given). One token per test file: a second harness in the same process
 * would find the first token, because SoftHSM reads its configuration once per process.
 */
export async function restart(h: Harness, clock: ManualClock, env?: Record<string, string>): Promise<Harness> {
  await h.daemon.stop();
  const config = env ? testConfig(h.token, env) : h.config;
  const daemon = await startDaemon(config, silentLogger, clock);
  const next: Harness = { ...h, config, daemon, endpoint: `http://127.0.0.1:${daemon.port}` };
  syncClock(next, clock);
  return next;
}

/** RSAES_OAEP_SHA_* wrapping, done outside the daemon as a customer would. */
export function wrapOaep(publicKeyDer: Uint8Array, material: Buffer, hash: 'sha1' | 'sha256'): Buffer {
  const key = createPublicKey({ key: Buffer.from(publicKeyDer), format: 'der', type: 'spki' });
  return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, material);
}

/**
 * RSA_AES_KEY_WRAP_SHA_*: a fresh AES-256 key wrapped with RSA-OAEP, followed by the material
 * wrapped under that AES key with AES key wrap with padding (RFC 5649).
 */
export function wrapRsaAes(publicKeyDer: Uint8Array, material: Buffer, hash: 'sha1' | 'sha256'): Buffer {
  const aes = randomBytes(32);
  const kwp = createCipheriv('id-aes256-wrap-pad', aes, Buffer.from('A65959A6', 'hex'));
  return Buffer.concat([wrapOaep(publicKeyDer, aes, hash), kwp.update(material), kwp.final()]);
}

/**
 * Opens a p11kms ciphertext (format v1, README) made with no encryption context, outside the
 * daemon, with key material the test knows: proof that the token holds exactly that material.
 */
export function openLocally(material: Buffer, blob: Uint8Array): Buffer {
  const b = Buffer.from(blob);
  const header = b.subarray(0, 21);
  const iv = b.subarray(21, 33);
  const sealed = b.subarray(33);
  const d = createDecipheriv('aes-256-gcm', material, iv);
  d.setAAD(Buffer.concat([header, Buffer.alloc(4)])); // empty context: pair count 0
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
}

/** The key-material version a ciphertext names (format v1, bytes 17..21). */
export const versionOf = (blob: Uint8Array): number => Buffer.from(blob).readUInt32BE(17);
