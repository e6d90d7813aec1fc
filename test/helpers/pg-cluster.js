// A real PostgreSQL 15 cluster of our own, in plain JavaScript so that both the tests
// (test/helpers/postgres.ts, test/global-setup.ts) and `npm run bench` (bench/workers.js) use it:
// initdb in a fresh temp dir, listening only on a Unix socket in that dir (no TCP port to
// collide with anyone), stopped and removed afterwards. initdb and postgres refuse to run as
// root, so as root they run as the `postgres` user. Durability settings are off (fsync,
// synchronous_commit): speed, never production. Types: pg-cluster.d.ts.
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PG_BIN = process.env.P11KMS_PG_BIN ?? '/usr/lib/postgresql/15/bin';
/** Only names the socket file inside the cluster's own directory. */
export const PG_PORT = 5432;

const asRoot = process.getuid?.() === 0;

/** Runs a PostgreSQL program (as the `postgres` user when we are root); returns its stdout. */
export function pgRun(cmd, args, opts = {}) {
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  return execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }).toString();
}

/** URL, createdb and psql for the cluster whose socket is in `socketDir`. */
export function pgClient(socketDir) {
  const conn = ['-h', socketDir, '-p', String(PG_PORT), '-U', 'postgres'];
  const client = {
    url: (database) => `postgresql://postgres@localhost/${database}?host=${encodeURIComponent(socketDir)}&port=${PG_PORT}`,
    createDatabase(name) {
      try {
        pgRun(join(PG_BIN, 'createdb'), [...conn, name]);
      } catch (e) {
        if (!String(e.stderr ?? '').includes('already exists')) throw e;
      }
      return client.url(name);
    },
    psql: (database, sql) => pgRun(join(PG_BIN, 'psql'), [...conn, '-d', database, '-At', '-c', sql]),
  };
  return client;
}

export function startPgCluster() {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-pg-'));
  if (asRoot) {
    const id = (flag) => Number(execFileSync('id', [flag, 'postgres']).toString().trim());
    chownSync(dir, id('-u'), id('-g'));
  }
  const data = join(dir, 'data');
  pgRun(join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const options = [
    `-k ${dir}`, "-c listen_addresses=''", `-p ${PG_PORT}`, '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off',
    '-c max_connections=300', '-c shared_buffers=32MB',
  ].join(' ');
  const cluster = {
    ...pgClient(dir),
    dir,
    socketDir: dir,
    start: () => void pgRun(join(PG_BIN, 'pg_ctl'), ['-D', data, '-l', join(dir, 'log'), '-o', options, '-w', 'start']),
    stop: (mode = 'fast') => void pgRun(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', mode, '-w', 'stop']),
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
