import { startPgCluster, type PgCluster } from './helpers/postgres.js';

/**
 * One PostgreSQL cluster for the whole run (each test file, or each daemon, makes its own
 * database in it): started here, stopped and removed at the end. Test files that restart
 * PostgreSQL start a cluster of their own instead (test/helpers/postgres.ts).
 */
let cluster: PgCluster | undefined;
let users = 0;

// Each vitest project runs the global set-up; they share one cluster.
export function setup(): void {
  users++;
  cluster ??= startPgCluster();
  process.env.P11KMS_TEST_PG_DIR = cluster.socketDir;
}

export function teardown(): void {
  if (--users === 0) cluster?.destroy();
}
