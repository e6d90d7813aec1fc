// `npm run bench`: the token's own limit and the daemon over loopback HTTP, on the same
// machine and token, in one run; prints a markdown table. See README, "Benchmark".
//
// Environment: BENCH_SECONDS (per row, default 10), BENCH_CONNECTIONS (default 16),
// BENCH_WARMUP_SECONDS (default 3), BENCH_KEEP=1 keeps the temp dir, BENCH_CPU_PROF=DIR runs the
// daemon with --cpu-prof into DIR, BENCH_ROWS=Encrypt,Encrypt1,Decrypt,... limits the daemon rows
// (Encrypt1: one connection, sequential),
// BENCH_DAEMON_ENV='{"P11KMS_AUDIT_DURABILITY":"write"}' adds daemon environment,
// BENCH_ENTRY=path runs another build of the daemon (A/B runs), BENCH_NO_LIMIT=1 skips the limit,
// BENCH_RATE=N offers N requests/s in all instead of as many as the connections can send.
// HSM rows (Encrypt through the HSM emulator): see bench/hsm-rows.js for BENCH_HSM_SECONDS,
// BENCH_HSM_LATENCIES and BENCH_HSM_POOLS. Worker-process rows (Encrypt on the PostgreSQL store,
// 1 process and P11KMS_WORKERS=N): see bench/workers.js for BENCH_WORKERS, BENCH_DATABASE_URL and
// BENCH_LOAD_PROCESSES.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  AAD_BYTES, LABEL, load as loadWith, log, makeToken, MODULE, presign, requestBodies, ROOT, rssMb, runNode, startDaemon,
} from './lib.js';
import { hsmRows, hsmTable } from './hsm-rows.js';
import { workerRows, workersNote } from './workers.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const ROWS = (process.env.BENCH_ROWS ?? 'Encrypt,Encrypt1,Decrypt,GenerateDataKey,Sign,Workers,XKS,HSM').split(',');
const RATE = Number(process.env.BENCH_RATE) || undefined;

function machine() {
  const cpu = os.cpus();
  let distro = '';
  try {
    distro = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
    distro += ` (${readFileSync('/etc/debian_version', 'utf8').trim()})`;
  } catch {
    /* not Debian */
  }
  let softhsm = '';
  try {
    softhsm = execFileSync('softhsm2-util', ['--version']).toString().trim();
  } catch {
    /* reported as unknown */
  }
  return {
    cpu: `${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: `${distro || os.type()} / Linux ${os.release()}`,
    node: process.version,
    softhsm: softhsm ? `SoftHSM ${softhsm}` : 'SoftHSM (version unknown)',
  };
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

/**
 * XKS Encrypt through bench/xks-encrypt.mjs (its own daemon with the XKS listener on HTTPS,
 * SigV4 service kms-xks-proxy), run after the main daemon has stopped so the two do not compete.
 */
function xksRow() {
  const name = `daemon XKS Encrypt (HTTPS)`;
  log(`XKS Encrypt: bench/xks-encrypt.mjs, ${SECONDS} s at ${CONNECTIONS} connections`);
  try {
    const out = execFileSync(process.execPath, [join(ROOT, 'bench/xks-encrypt.mjs'), '--seconds', String(SECONDS), '--connections', String(CONNECTIONS)], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
    });
    const x = JSON.parse(out.slice(out.indexOf('{')));
    log(`XKS Encrypt: ${fmt(x.requestsPerSecond)} req/s, p50 ${x.latencyMs.p50} ms, p99 ${x.latencyMs.p99} ms`);
    return { name, rps: x.requestsPerSecond, p50: x.latencyMs.p50, p99: x.latencyMs.p99, non2xx: x.non2xx, errors: x.errors };
  } catch (e) {
    return { name, na: `failed: ${String(e.message ?? e).split('\n')[0]}` };
  }
}

const fmt = (x, d = 0) => (x === undefined ? '–' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));

async function main() {
  const info = machine();
  const loadBefore = loadavg();
  const dir = mkdtempSync(join(os.tmpdir(), 'p11kms-bench-'));
  log(`temp dir ${dir}`);
  const { conf, pinFile } = makeToken(dir);
  const limitArgs = [join(ROOT, 'bench/limit.js'), MODULE, LABEL, pinFile, String(SECONDS), String(AAD_BYTES)];
  const limitEnv = { env: { ...process.env, SOFTHSM2_CONF: conf } };

  log('limit: AES-256-GCM in the token through pkcs11js, one thread');
  const skipLimit = () => ({ rps: NaN, p50: NaN, p99: NaN });
  const limitBefore = process.env.BENCH_NO_LIMIT ? skipLimit() : await runNode(limitArgs, limitEnv);
  log(`limit ${fmt(limitBefore.rps)} ops/s`);

  const daemonEnv = process.env.BENCH_DAEMON_ENV ? JSON.parse(process.env.BENCH_DAEMON_ENV) : {};
  const daemon = await startDaemon(dir, conf, {
    entry: process.env.BENCH_ENTRY,
    env: daemonEnv,
    cpuProfDir: process.env.BENCH_CPU_PROF,
  });
  const rows = [];
  try {
    const bodies = await requestBodies(daemon.port);
    // Encrypt1: Encrypt over one connection, one request at a time (latency of a lone request,
    // which the audit trail's group commit must not make wait for more than one fdatasync).
    for (const row of ['Encrypt', 'Encrypt1', 'Decrypt', 'GenerateDataKey', 'Sign']) {
      if (!ROWS.includes(row)) continue;
      const sequential = row === 'Encrypt1';
      const op = sequential ? 'Encrypt' : row;
      const name = sequential ? 'daemon Encrypt, one connection, sequential' : `daemon ${op}${op === 'Sign' ? ' (ECDSA P-256)' : ''}`;
      const load = (port, requests, seconds, pid) =>
        loadWith(port, requests, seconds, pid, { connections: sequential ? 1 : CONNECTIONS, rate: RATE, sequential });
      if (!bodies[op]) {
        rows.push({ name, na: op === 'Sign' ? 'n/a until issue 5 lands' : 'n/a' });
        continue;
      }
      log(`${row}: warm-up ${WARMUP} s, then ${SECONDS} s at ${sequential ? 1 : CONNECTIONS} connection(s)${sequential ? ', sequential' : ''}`);
      if (WARMUP > 0) await load(daemon.port, await presign(daemon.port, op, bodies[op]), WARMUP, daemon.child.pid);
      const r = await load(daemon.port, await presign(daemon.port, op, bodies[op]), SECONDS, daemon.child.pid);
      if (r.non2xx || r.errors || r.timeouts) log(`${row}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
      log(`${row}: ${fmt(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, peak RSS ${fmt(r.peakRssMb)} MB, daemon CPU ${fmt(r.cpuUsPerReq)} µs/request (of which system ${fmt(r.sysUsPerReq)}; ${r.daemonCores.toFixed(2)} cores; load generator ${r.loadCores.toFixed(2)} cores)`);
      log(`${row}: µs per request by thread: ${r.threads}`);
      rows.push({ name, connections: sequential ? 1 : CONNECTIONS, ...r });
    }
  } finally {
    const hwm = rssMb(daemon.child.pid).hwm;
    daemon.child.kill('SIGTERM');
    await new Promise((r) => daemon.child.once('exit', r));
    rows.hwm = hwm;
  }

  let workers = [];
  if (ROWS.includes('Workers')) {
    try {
      workers = await workerRows(dir, conf, { seconds: SECONDS, warmup: WARMUP, connections: CONNECTIONS, rate: RATE, entry: process.env.BENCH_ENTRY, env: daemonEnv });
    } catch (e) {
      log(`worker rows failed: ${e.stack ?? e}`);
      workers = [{ name: 'daemon Encrypt, PostgreSQL store, 1 and N processes', na: `failed: ${String(e.message ?? e).split('\n')[0]}` }];
    }
    rows.push(...workers);
  }
  if (ROWS.includes('XKS')) rows.push(xksRow());
  const hsm = ROWS.includes('HSM') ? await hsmRows(dir, conf) : [];

  log('limit again (the machine is shared: the ratio uses the mean of both runs)');
  const limitAfter = process.env.BENCH_NO_LIMIT ? skipLimit() : await runNode(limitArgs, limitEnv);
  const limit = (limitBefore.rps + limitAfter.rps) / 2;
  const loadAfter = loadavg();
  if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });

  const lines = [
    `Machine: ${info.cpu}, ${info.memory} RAM, ${info.os}, Node ${info.node}, ${info.softhsm}.`,
    `Load average (1/5/15 min) before: ${loadBefore}; after: ${loadAfter}.`,
    `Daemon: one process (but the worker-process row), SQLite store (but the PostgreSQL rows), 8 token sessions per process, audit on (durability ${daemonEnv.P11KMS_AUDIT_DURABILITY ?? 'fsync'}, fail-closed), SigV4 and authorization on every request, log level info.`,
    `Load: autocannon in a separate process, ${CONNECTIONS} connections, keep-alive, ${SECONDS} s per row after ${WARMUP} s warm-up, 64 distinct pre-signed requests per row; 32-byte plaintexts, encryption context {"purpose":"bench"}. Daemon latencies are autocannon's (1 ms resolution), except the one-connection row (bench/sequential.js: one request at a time, timed per request); the limit's are per call.`,
    '',
    '| Measurement | Concurrency | Requests/s | p50 (ms) | p99 (ms) | Peak RSS (MB) | Daemon CPU per request (µs) | ÷ limit |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    `| **limit**: AES-256-GCM encrypt, 32 B + ${AAD_BYTES} B AAD, token-object key, pkcs11js sync, 1 thread (before / after) | 1 | ${fmt(limitBefore.rps)} / ${fmt(limitAfter.rps)} | ${fmt(limitBefore.p50, 3)} | ${fmt(limitBefore.p99, 3)} | – | – | 1.00 |`,
  ];
  for (const r of rows) {
    if (r.na) lines.push(`| ${r.name} | – | ${r.na} | | | | | |`);
    else {
      const flag = r.non2xx || r.errors ? ` (${r.non2xx} non-2xx, ${r.errors} errors)` : '';
      const ms = (x) => (r.connections === 1 ? fmt(x, 2) : fmt(x));
      lines.push(`| ${r.name}${flag} | ${r.connections ?? CONNECTIONS} | ${fmt(r.rps)} | ${ms(r.p50)} | ${ms(r.p99)} | ${fmt(r.peakRssMb)} | ${fmt(r.cpuUsPerReq)} | ${(r.rps / limit).toFixed(2)} |`);
    }
  }
  lines.push('', `Daemon peak RSS over the whole run (VmHWM): ${fmt(rows.hwm)} MB. Ratios use the mean limit, ${fmt(limit)} ops/s.`);
  lines.push(...workersNote(workers));
  lines.push(...hsmTable(hsm));
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
