import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { PG_BIN, PG_PORT, pgClient, pgRun, type PgClient } from './pg-cluster.js';

/**
 * A real PostgreSQL 15 cluster for tests: test/helpers/pg-cluster.js (plain JavaScript, shared
 * with `npm run bench`) starts one in a temp dir on its own Unix socket; this file adds what
 * only the tests need.
 */

export { PG_BIN, startPgCluster, type PgCluster } from './pg-cluster.js';

/** The cluster that test/global-setup.ts started for the whole run (socket directory in the environment). */
export function sharedPgCluster(): PgClient {
  const dir = process.env.P11KMS_TEST_PG_DIR;
  if (!dir) throw new Error('no test PostgreSQL cluster: run the tests through vitest (test/global-setup.ts)');
  return pgClient(dir);
}

/**
 * Everything a database holds, as bytes: pg_dump's text plus every bytea value decoded, so
 * that a test can look for a secret in clear whatever the column type.
 */
export function databaseBytes(url: string): Buffer {
  const u = new URL(url);
  const dump = pgRun(join(PG_BIN, 'pg_dump'), ['--data-only', '-h', u.searchParams.get('host')!, '-p', String(PG_PORT), '-U', 'postgres', u.pathname.slice(1)]);
  const blobs = [...dump.matchAll(/\\x([0-9a-f]+)/g)].map((m) => Buffer.from(m[1]!, 'hex'));
  return Buffer.concat([Buffer.from(dump), ...blobs]);
}

/** A database name derived from a path (a token's temp dir): the same token always gets the same database. */
export function databaseNameFor(path: string): string {
  return `t_${createHash('sha256').update(path).digest('hex').slice(0, 16)}`;
}

/** Tests run against PostgreSQL when P11KMS_TEST_STORE=postgres (./scripts/test runs the e2e files both ways). */
export const testStoreIsPostgres = process.env.P11KMS_TEST_STORE === 'postgres';
