import { execFile, execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A real PostgreSQL 15 cluster for tests: initdb in a fresh temp dir, listening only on a Unix
 * socket in that dir (no TCP port to collide with anyone), stopped and removed afterwards.
 * initdb and postgres refuse to run as root, so as root they run as the `postgres` user.
 * Durability settings are off (fsync, synchronous_commit): test speed, never production.
 */

export const PG_BIN = process.env.P11KMS_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const PORT = 5432; // only names the socket file inside our own directory

export interface PgCluster {
  dir: string;
  socketDir: string;
  url(database: string): string;
  /** Creates the database (no-op if it exists) and returns its URL. */
  createDatabase(name: string): string;
  psql(database: string, sql: string): string;
  /** psql without waiting for it (e.g. a transaction that holds a lock while the test goes on); resolves with its output. */
  psqlInBackground(database: string, sql: string): Promise<string>;
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  destroy(): void;
}

const asRoot = process.getuid?.() === 0;

const asPostgres = (cmd: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);

function run(cmd: string, args: string[], opts: ExecFileSyncOptions = {}): string {
  const [file, argv] = asPostgres(cmd, args);
  return execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }).toString();
}

export function startPgCluster(): PgCluster {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-pg-'));
  if (asRoot) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), Number(execFileSync('id', ['-g', 'postgres']).toString().trim()));
  const data = join(dir, 'data');
  run(join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const options = [
    `-k ${dir}`, "-c listen_addresses=''", `-p ${PORT}`, '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off',
    '-c max_connections=300', '-c shared_buffers=32MB',
  ].join(' ');
  const cluster: PgCluster = {
    dir,
    socketDir: dir,
    url: (database) => `postgresql://postgres@localhost/${database}?host=${encodeURIComponent(dir)}&port=${PORT}`,
    createDatabase(name) {
      try {
        run(join(PG_BIN, 'createdb'), ['-h', dir, '-p', String(PORT), '-U', 'postgres', name]);
      } catch (e) {
        if (!String((e as { stderr?: Buffer }).stderr ?? '').includes('already exists')) throw e;
      }
      return cluster.url(name);
    },
    psql: (database, sql) => run(join(PG_BIN, 'psql'), ['-h', dir, '-p', String(PORT), '-U', 'postgres', '-d', database, '-At', '-c', sql]),
    psqlInBackground: (database, sql) =>
      new Promise((resolve, reject) => {
        const [file, argv] = asPostgres(join(PG_BIN, 'psql'), ['-h', dir, '-p', String(PORT), '-U', 'postgres', '-d', database, '-At', '-c', sql]);
        execFile(file, argv, (e, out) => (e ? reject(e) : resolve(out)));
      }),
    start: () => void run(join(PG_BIN, 'pg_ctl'), ['-D', data, '-l', join(dir, 'log'), '-o', options, '-w', 'start']),
    stop: (mode = 'fast') => void run(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', mode, '-w', 'stop']),
    destroy() {
      try {
        cluster.stop('immediate');
      } catch {
        /* already stopped */
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  cluster.start();
  return cluster;
}

/** The cluster that test/global-setup.ts started for the whole run (socket directory in the environment). */
export function sharedPgCluster(): Pick<PgCluster, 'url' | 'createDatabase' | 'psql'> {
  const dir = process.env.P11KMS_TEST_PG_DIR;
  if (!dir) throw new Error('no test PostgreSQL cluster: run the tests through vitest (test/global-setup.ts)');
  const cluster = {
    url: (database: string) => `postgresql://postgres@localhost/${database}?host=${encodeURIComponent(dir)}&port=${PORT}`,
    createDatabase(name: string) {
      try {
        run(join(PG_BIN, 'createdb'), ['-h', dir, '-p', String(PORT), '-U', 'postgres', name]);
      } catch (e) {
        if (!String((e as { stderr?: Buffer }).stderr ?? '').includes('already exists')) throw e;
      }
      return cluster.url(name);
    },
    psql: (database: string, sql: string) =>
      run(join(PG_BIN, 'psql'), ['-h', dir, '-p', String(PORT), '-U', 'postgres', '-d', database, '-At', '-c', sql]),
  };
  return cluster;
}

/**
 * Everything a database holds, as bytes: pg_dump's text plus every bytea value decoded, so
 * that a test can look for a secret in clear whatever the column type.
 */
export function databaseBytes(url: string): Buffer {
  const u = new URL(url);
  const dump = run(join(PG_BIN, 'pg_dump'), ['--data-only', '-h', u.searchParams.get('host')!, '-p', String(PORT), '-U', 'postgres', u.pathname.slice(1)]);
  const blobs = [...dump.matchAll(/\\x([0-9a-f]+)/g)].map((m) => Buffer.from(m[1]!, 'hex'));
  return Buffer.concat([Buffer.from(dump), ...blobs]);
}

/** A database name derived from a path (a token's temp dir): the same token always gets the same database. */
export function databaseNameFor(path: string): string {
  return `t_${createHash('sha256').update(path).digest('hex').slice(0, 16)}`;
}

/** Tests run against PostgreSQL when P11KMS_TEST_STORE=postgres (./scripts/test runs the e2e files both ways). */
export const testStoreIsPostgres = process.env.P11KMS_TEST_STORE === 'postgres';
