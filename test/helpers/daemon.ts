import { KMSClient } from '@aws-sdk/client-kms';
import { join } from 'node:path';
import { ManualClock, systemClock, type Clock } from '../../src/clock.js';
import { DEV_ADMIN_ACCESS_KEY_ID, DEV_ADMIN_SECRET_ACCESS_KEY, loadConfig, type Config } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { readFileSync } from 'node:fs';
import { databaseBytes, databaseNameFor, sharedPgCluster, testStoreIsPostgres } from './postgres.js';
import { createTempToken, SOFTHSM_MODULE, type TempToken } from './softhsm.js';

export const ADMIN = { accessKeyId: DEV_ADMIN_ACCESS_KEY_ID, secretAccessKey: DEV_ADMIN_SECRET_ACCESS_KEY };
export const ACCOUNT = '111122223333';
export const REGION = 'us-east-1';

export interface Harness {
  token: TempToken;
  config: Config;
  daemon: Daemon;
  endpoint: string;
  kms: KMSClient;
  stop(): Promise<void>;
}

/** With P11KMS_TEST_STORE=postgres each token gets its own PostgreSQL database (the same one on restart). */
export function testStoreEnv(token: TempToken): Record<string, string> {
  return testStoreIsPostgres ? { P11KMS_DATABASE_URL: sharedPgCluster().createDatabase(databaseNameFor(token.dir)) } : {};
}

export function testConfig(token: TempToken, env: Record<string, string> = {}): Config {
  return loadConfig({
    ...testStoreEnv(token),
    P11KMS_DATA_DIR: join(token.dir, 'data'),
    P11KMS_PORT: '0',
    P11KMS_PKCS11_MODULE: SOFTHSM_MODULE,
    P11KMS_TOKEN_LABEL: token.label,
    P11KMS_PIN: token.userPin,
    ...env,
  });
}

/** The real daemon, in this process, on an ephemeral loopback port, with a fresh token. */
export async function startHarness(
  opts: { env?: Record<string, string>; clock?: Clock; prepare?: (token: TempToken) => Record<string, string> } = {},
): Promise<Harness> {
  const token = createTempToken();
  const config = testConfig(token, { ...opts.env, ...opts.prepare?.(token) });
  const daemon = await startDaemon(config, silentLogger, opts.clock ?? systemClock);
  const endpoint = `${daemon.scheme}://127.0.0.1:${daemon.port}`;
  return {
    token,
    config,
    daemon,
    endpoint,
    kms: client(endpoint),
    async stop() {
      await daemon.stop();
      token.cleanup();
    },
  };
}

/** What the metadata store holds on disk, as bytes (SQLite file and WAL, or a PostgreSQL dump): to prove no secret is in clear. */
export function storedBytes(config: Config): Buffer {
  if (config.database) return databaseBytes(config.database.url.reveal());
  return Buffer.concat(['metadata.sqlite', 'metadata.sqlite-wal'].map((file) => {
    try {
      return readFileSync(join(config.dataDir, file));
    } catch {
      return Buffer.alloc(0);
    }
  }));
}

export function client(endpoint: string, credentials = ADMIN): KMSClient {
  return new KMSClient({ endpoint, region: REGION, credentials, maxAttempts: 1 });
}

export { ManualClock };

/** Runs a call that must fail and returns the error, so tests can assert on name, status and message. */
export async function failure(p: Promise<unknown>): Promise<Error & { name: string; $metadata?: { httpStatusCode?: number } }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { name: string; $metadata?: { httpStatusCode?: number } };
  }
  throw new Error('expected the call to fail, but it succeeded');
}
