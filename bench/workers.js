// The worker-process rows of `npm run bench` (issue 11, "All cores of one host"): Encrypt on the
// PostgreSQL store with one daemon process, then with N worker processes behind the same port
// (P11KMS_WORKERS=N), same token, same load generator settings, same run.
//
// Environment: BENCH_WORKERS (N, default os.availableParallelism()), BENCH_DATABASE_URL (use that
// database, which should be empty, instead of a PostgreSQL cluster of the bench's own),
// BENCH_LOAD_PROCESSES (autocannon processes for the N-process row; default below).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { startPgCluster } from '../test/helpers/pg-cluster.js';
import { encryptBodies, load, log, presign, startDaemon, withChildren } from './lib.js';

const WORKERS = Number(process.env.BENCH_WORKERS ?? os.availableParallelism());

const fmt = (x, d = 0) => (x === undefined ? '–' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));

/**
 * Autocannon processes for N workers: enough that none needs more than 0.8 of a core, judging by
 * what one process needed to drive one worker (`oneLoadCores`), but never more than a quarter of
 * the host's cores, which the generator would otherwise take from the workers it measures.
 */
function loadProcesses(oneLoadCores) {
  if (process.env.BENCH_LOAD_PROCESSES) return Number(process.env.BENCH_LOAD_PROCESSES);
  const wanted = Math.ceil((WORKERS * oneLoadCores) / 0.8);
  return Math.max(1, Math.min(wanted, Math.floor(os.availableParallelism() / 4)));
}

/** Audit records so far per worker (each worker writes its own chain in <audit dir>/<node id>). */
function auditRecords(dataDir) {
  const audit = join(dataDir, 'audit');
  const out = {};
  if (!existsSync(audit)) return out;
  for (const node of readdirSync(audit, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    out[node.name] = 0;
    for (const f of readdirSync(join(audit, node.name))) {
      const text = readFileSync(join(audit, node.name, f), 'latin1');
      for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) out[node.name]++;
    }
  }
  return out;
}

/** Rows for the table of bench/run.js; `shape` is {seconds, warmup, connections, rate, entry, env}. */
export async function workerRows(dir, conf, shape) {
  const pg = process.env.BENCH_DATABASE_URL ? undefined : startPgCluster();
  log(pg ? `PostgreSQL: own cluster in ${pg.dir}` : 'PostgreSQL: BENCH_DATABASE_URL');
  const rows = [];
  try {
    for (const workers of WORKERS > 1 ? [1, WORKERS] : [1]) {
      const url = pg ? pg.createDatabase(`bench_w${workers}`) : process.env.BENCH_DATABASE_URL;
      const dataDir = join(dir, `data-pg-${workers}`);
      const daemon = await startDaemon(dir, conf, {
        entry: shape.entry,
        env: { ...shape.env, P11KMS_DATABASE_URL: url, P11KMS_WORKERS: String(workers), P11KMS_DATA_DIR: dataDir },
        listeners: workers,
      });
      try {
        // CPU and RSS add up over the supervisor (it hands out connections) and its workers.
        const pids = withChildren(daemon.child.pid);
        // At least 8 connections per worker: with 4 (BENCH_CONNECTIONS=8, N=2) CPU per request was 1.8-3.9 ×
        // that of one process at 8 here; each process batches less (audit commits, token wake-ups).
        const connections = Math.max(shape.connections, 8 * workers);
        const processes = workers === 1 ? 1 : loadProcesses(rows[0].loadCores);
        const opts = { connections, rate: shape.rate, processes };
        const bodies = await encryptBodies(daemon.port, `bench ${workers} workers`);
        log(`Encrypt, PostgreSQL, ${workers} process(es): warm-up ${shape.warmup} s, then ${shape.seconds} s at ${connections} connections from ${processes} load process(es)`);
        if (shape.warmup > 0) await load(daemon.port, await presign(daemon.port, 'Encrypt', bodies), shape.warmup, pids, opts);
        const signed = await presign(daemon.port, 'Encrypt', bodies);
        const before = auditRecords(dataDir);
        const r = await load(daemon.port, signed, shape.seconds, pids, opts);
        // node:cluster hands each new connection to a free worker, so keep-alive connections
        // opened at once need not split evenly: the share each worker served, from its audit trail.
        const after = auditRecords(dataDir);
        const served = Object.keys(after).sort().map((node) => after[node] - (before[node] ?? 0));
        const shares = served.map((n) => Math.round((100 * n) / Math.max(1, served.reduce((a, b) => a + b, 0))));
        if (r.non2xx || r.errors || r.timeouts) log(`Encrypt, ${workers} process(es): ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
        log(`Encrypt, PostgreSQL, ${workers} process(es): ${fmt(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, RSS ${fmt(r.peakRssMb)} MB, CPU ${fmt(r.cpuUsPerReq)} µs/request (${r.daemonCores.toFixed(2)} cores over ${pids.length} process(es); load generator ${r.loadCores.toFixed(2)} cores, busiest process ${r.busiestLoadCores.toFixed(2)}), load average ${os.loadavg()[0].toFixed(2)}`);
        log(`Encrypt, PostgreSQL, ${workers} process(es): µs per request by thread: ${r.threads}${workers > 1 ? `; share of requests per worker: ${shares.join(' / ')} %` : ''}`);
        const name = workers === 1 ? 'daemon Encrypt, PostgreSQL store, 1 process' : `daemon Encrypt, PostgreSQL store, ${workers} worker processes (sums)`;
        rows.push({ name, workers, connections, shares, ...r });
      } finally {
        daemon.child.kill('SIGTERM');
        await new Promise((res) => daemon.child.once('exit', res));
      }
    }
  } finally {
    pg?.destroy();
  }
  return rows;
}

/** The note under the table: how the rows were made and N ÷ 1. */
export function workersNote(rows) {
  const [one, many] = rows;
  if (!one || one.na) return [];
  const lines = [
    '',
    `PostgreSQL rows: ${process.env.BENCH_DATABASE_URL ? 'the database of BENCH_DATABASE_URL' : "a PostgreSQL 15 cluster of the bench's own (initdb in a temp dir, Unix socket, fsync off: Encrypt reads only cached metadata)"}, a fresh daemon per row on the same token; the N-process row is \`P11KMS_WORKERS=${many?.workers ?? WORKERS}\` (a supervisor handing connections round-robin to N worker daemons), its CPU and RSS the sums over the supervisor and the workers. Load generator: ${one.loadCores.toFixed(2)} cores for 1 process${many ? `, ${many.loadCores.toFixed(2)} cores in ${many.loadProcesses} autocannon process(es) for ${many.workers}` : ''}.`,
  ];
  if (many) {
    lines.push(`${many.workers} processes ÷ 1 process: ${(many.rps / one.rps).toFixed(2)} × the requests/s, ${(many.cpuUsPerReq / one.cpuUsPerReq).toFixed(2)} × the CPU per request; share of the requests each worker served: ${many.shares.join(' / ')} %.`);
    if (many.busiestLoadCores >= 0.9) lines.push(`The load generator was saturated (${many.busiestLoadCores.toFixed(2)} cores in its busiest process): the ${many.workers}-process figure is a lower bound; rerun with more BENCH_LOAD_PROCESSES.`);
  }
  return lines;
}
