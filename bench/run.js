// `npm run bench`: the token's own limit and the daemon over loopback HTTP, on the same
// machine and token, in one run; prints a markdown table. See README, "Benchmark".
//
// Environment: BENCH_SECONDS (per row, default 10), BENCH_CONNECTIONS (default 16),
// BENCH_WARMUP_SECONDS (default 3), BENCH_KEEP=1 keeps the temp dir, BENCH_CPU_PROF=DIR runs the
// daemon with --cpu-prof into DIR, BENCH_ROWS=Encrypt,Decrypt,... limits the daemon rows,
// BENCH_DAEMON_ENV='{"P11KMS_AUDIT_DURABILITY":"write"}' adds daemon environment.
// The HSM rows (Encrypt through the HSM emulator at 1 and 5 ms per token call, pools 8/32/128):
// BENCH_HSM_SECONDS (per row, default 5), BENCH_HSM_LATENCIES (default 1,5), BENCH_HSM_POOLS
// (default 8,32,128).
import { Sha256 } from '@aws-crypto/sha256-js';
import { CreateKeyCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const WARMUP = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const ROWS = (process.env.BENCH_ROWS ?? 'Encrypt,Decrypt,GenerateDataKey,Sign,XKS,HSM').split(',');
const HSM_SECONDS = Number(process.env.BENCH_HSM_SECONDS ?? 5);
const HSM_LATENCIES = (process.env.BENCH_HSM_LATENCIES ?? '1,5').split(',').map(Number);
const HSM_POOLS = (process.env.BENCH_HSM_POOLS ?? '8,32,128').split(',').map(Number);
const MODULE = process.env.P11KMS_PKCS11_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';
const CREDENTIALS = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };
const REGION = 'us-east-1';
const LABEL = 'p11kms-bench';
/** The daemon's AAD for these requests: 21-byte blob header + canonical {"purpose":"bench"} (24 bytes). */
const ENCRYPTION_CONTEXT = { purpose: 'bench' };
const AAD_BYTES = 21 + 4 + 8 + 'purpose'.length + 'bench'.length;

const log = (m) => process.stderr.write(`bench: ${m}\n`);

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

function runNode(args, opts = {}) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'], ...opts });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolveRun(JSON.parse(out.trim().split('\n').at(-1))) : reject(new Error(`${args[0]} exited ${code}`))));
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

function rssMb(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024, hwm: Number(/VmHWM:\s+(\d+)/.exec(status)[1]) / 1024 };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

async function startDaemon(dir, conf, env = {}) {
  const extra = { ...(process.env.BENCH_DAEMON_ENV ? JSON.parse(process.env.BENCH_DAEMON_ENV) : {}), ...env };
  const args = [];
  if (process.env.BENCH_CPU_PROF) args.push('--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`);
  args.push(join(ROOT, 'dist/entry.cjs'), 'serve');
  const child = spawn(process.execPath, args, {
    env: {
      PATH: process.env.PATH,
      SOFTHSM2_CONF: conf,
      P11KMS_DATA_DIR: join(dir, 'data'),
      P11KMS_PORT: '0',
      P11KMS_PKCS11_MODULE: MODULE,
      P11KMS_TOKEN_LABEL: LABEL,
      P11KMS_PIN_FILE: join(dir, 'softhsm', 'user.pin'),
      P11KMS_LOG_LEVEL: 'info',
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const deadline = Date.now() + 30_000;
  while (!/"msg":"p11kms listening"/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`daemon did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = JSON.parse(out.split('\n').find((l) => l.includes('p11kms listening'))).port;
  return { child, port, output: () => out };
}

/** A pool of distinct requests, each signed now (SigV4 allows 5 minutes of skew: each row re-signs). */
async function presign(port, target, bodies) {
  const signer = new SignatureV4({ service: 'kms', region: REGION, credentials: CREDENTIALS, sha256: Sha256 });
  const host = `127.0.0.1:${port}`;
  const out = [];
  for (const body of bodies) {
    const req = new HttpRequest({
      method: 'POST', protocol: 'http:', hostname: '127.0.0.1', port, path: '/',
      headers: { host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `TrentService.${target}` },
      body,
    });
    const signed = await signer.sign(req);
    out.push({ method: 'POST', path: '/', headers: signed.headers, body });
  }
  return out;
}

/** CPU time (user + system, ms) a process has used so far; `sys` alone when asked. */
function cpuMs(pid, sysOnly = false) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((sysOnly ? Number(f[12]) : Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

async function load(port, requests, seconds, pid, connections = CONNECTIONS) {
  const job = JSON.stringify({ url: `http://127.0.0.1:${port}`, connections, seconds, requests });
  const cpu0 = cpuMs(pid);
  const sys0 = cpuMs(pid, true);
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMb(pid).rss);
  }, 50);
  try {
    const r = await runNode([join(ROOT, 'bench/load.js')], { input: job });
    const cpu = cpuMs(pid) - cpu0;
    const sys = cpuMs(pid, true) - sys0;
    return {
      ...r, peakRssMb: Math.max(peak, rssMb(pid).rss), cpuUsPerReq: (cpu * 1000) / Math.max(1, r.ok),
      sysUsPerReq: (sys * 1000) / Math.max(1, r.ok), daemonCores: cpu / 1000 / r.seconds, loadCores: r.cpuMs / 1000 / r.seconds,
    };
  } finally {
    clearInterval(timer);
  }
}

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

/**
 * Encrypt through the HSM emulator (test/emulator) in front of the same SoftHSM2 token, the
 * emulator sleeping `latency` ms in the calling thread on each call a network HSM would send to
 * the HSM (C_Encrypt here; C_EncryptInit is local). The emulated HSM's capacity for a pool is
 * sessions ÷ latency; each row starts its own daemon with that pool and twice as many connections.
 */
async function hsmRows(dir, conf) {
  const module = execFileSync(join(ROOT, 'test/emulator/build.sh'), { encoding: 'utf8' }).trim();
  const rows = [];
  for (const latency of HSM_LATENCIES) {
    for (const pool of HSM_POOLS) {
      const emuConf = join(dir, `p11emu-${latency}-${pool}.conf`);
      writeFileSync(emuConf, `module=${MODULE}\nlatency_ms=${latency}\n`);
      const connections = Math.max(16, 2 * pool);
      const capacity = (pool * 1000) / latency;
      const daemon = await startDaemon(dir, conf, {
        P11KMS_PKCS11_MODULE: module, P11EMU_CONFIG: emuConf, P11KMS_MAX_SESSIONS: String(pool),
      });
      try {
        const kms = new KMSClient({ endpoint: `http://127.0.0.1:${daemon.port}`, region: REGION, credentials: CREDENTIALS });
        const key = (await kms.send(new CreateKeyCommand({ Description: 'bench hsm' }))).KeyMetadata;
        const bodies = Array.from({ length: 64 }, (_, i) =>
          JSON.stringify({ KeyId: key.KeyId, Plaintext: b64(Buffer.alloc(32, i)), EncryptionContext: ENCRYPTION_CONTEXT }));
        log(`HSM ${latency} ms, pool ${pool}: warm-up 1 s, then ${HSM_SECONDS} s at ${connections} connections`);
        await load(daemon.port, await presign(daemon.port, 'Encrypt', bodies), 1, daemon.child.pid, connections);
        const r = await load(daemon.port, await presign(daemon.port, 'Encrypt', bodies), HSM_SECONDS, daemon.child.pid, connections);
        log(`HSM ${latency} ms, pool ${pool}: ${fmt(r.rps)} req/s of ${fmt(capacity)} (${((100 * r.rps) / capacity).toFixed(0)} %), p50 ${r.p50} ms, p99 ${r.p99} ms, daemon ${r.daemonCores.toFixed(2)} cores, load ${loadavg()}`);
        rows.push({ latency, pool, connections, capacity, load: loadavg(), ...r });
      } finally {
        daemon.child.kill('SIGTERM');
        await new Promise((res) => daemon.child.once('exit', res));
      }
      // The control: the same emulated HSM driven by `pool` plain threads, no daemon.
      const direct = await runNode([join(ROOT, 'bench/hsm-direct.mjs'), module, LABEL, join(dir, 'softhsm', 'user.pin'), String(pool), '3'], {
        env: { ...process.env, SOFTHSM2_CONF: conf, P11EMU_CONFIG: emuConf },
      });
      rows.at(-1).direct = direct.rps;
      log(`HSM ${latency} ms, pool ${pool}: driven directly by ${pool} threads ${fmt(direct.rps)} ops/s`);
    }
  }
  return rows;
}

function hsmTable(rows) {
  if (rows.length === 0) return [];
  return [
    '',
    `Through the HSM emulator (test/emulator, in front of the same SoftHSM2 token): Encrypt with the emulator sleeping the given latency in the calling thread on each C_Encrypt, as a network HSM blocks; one daemon per row with that many sessions (a network-HSM profile: token calls on the libuv pool, UV_THREADPOOL_SIZE = sessions + 4), 2 × pool connections (at least 16), ${HSM_SECONDS} s after 1 s warm-up. Capacity = sessions ÷ latency.`,
    '',
    '| Token call latency | Pool (sessions) | Connections | Emulated HSM capacity (req/s) | Same HSM driven directly (ops/s) | Daemon Encrypt req/s | % of capacity | p50 (ms) | p99 (ms) | Daemon CPU (cores) | Load average after |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows.map((r) => {
      const flag = r.non2xx || r.errors ? ` (${r.non2xx} non-2xx, ${r.errors} errors)` : '';
      return `| ${r.latency} ms | ${r.pool} | ${r.connections} | ${fmt(r.capacity)} | ${fmt(r.direct)} | ${fmt(r.rps)}${flag} | ${((100 * r.rps) / r.capacity).toFixed(0)} % | ${fmt(r.p50)} | ${fmt(r.p99)} | ${r.daemonCores.toFixed(2)} | ${r.load} |`;
    }),
  ];
}

const b64 = (b) => Buffer.from(b).toString('base64');
const fmt = (x, d = 0) => (x === undefined ? '–' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));

async function main() {
  const info = machine();
  const loadBefore = loadavg();
  const dir = mkdtempSync(join(os.tmpdir(), 'p11kms-bench-'));
  log(`temp dir ${dir}`);
  execFileSync(join(ROOT, 'softhsm/create-token.sh'), [join(dir, 'softhsm'), LABEL], { stdio: 'ignore' });
  const conf = join(dir, 'softhsm', 'softhsm2.conf');
  const pinFile = join(dir, 'softhsm', 'user.pin');
  const limitArgs = [join(ROOT, 'bench/limit.js'), MODULE, LABEL, pinFile, String(SECONDS), String(AAD_BYTES)];
  const limitEnv = { env: { ...process.env, SOFTHSM2_CONF: conf } };

  log('limit: AES-256-GCM in the token through pkcs11js, one thread');
  const limitBefore = await runNode(limitArgs, limitEnv);
  log(`limit ${fmt(limitBefore.rps)} ops/s`);

  const daemon = await startDaemon(dir, conf);
  const rows = [];
  try {
    const kms = new KMSClient({ endpoint: `http://127.0.0.1:${daemon.port}`, region: REGION, credentials: CREDENTIALS });
    const key = (await kms.send(new CreateKeyCommand({ Description: 'bench' }))).KeyMetadata;
    const samples = [];
    for (let i = 0; i < 64; i++) {
      const pt = Buffer.alloc(32, i);
      const enc = await kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: pt, EncryptionContext: ENCRYPTION_CONTEXT }));
      samples.push({ pt, ct: enc.CiphertextBlob });
    }
    let signKey;
    try {
      signKey = (await kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata;
    } catch (e) {
      log(`Sign row skipped: ${e.name}: ${e.message}`);
    }
    const bodies = {
      Encrypt: samples.map((s) => JSON.stringify({ KeyId: key.KeyId, Plaintext: b64(s.pt), EncryptionContext: ENCRYPTION_CONTEXT })),
      Decrypt: samples.map((s) => JSON.stringify({ CiphertextBlob: b64(s.ct), EncryptionContext: ENCRYPTION_CONTEXT })),
      GenerateDataKey: samples.map(() => JSON.stringify({ KeyId: key.KeyId, KeySpec: 'AES_256', EncryptionContext: ENCRYPTION_CONTEXT })),
      Sign: signKey
        ? samples.map((s) =>
            JSON.stringify({ KeyId: signKey.KeyId, Message: b64(Buffer.alloc(32, s.pt[0])), MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' }))
        : undefined,
    };
    for (const op of ['Encrypt', 'Decrypt', 'GenerateDataKey', 'Sign']) {
      if (!ROWS.includes(op)) continue;
      if (!bodies[op]) {
        rows.push({ name: `daemon ${op}${op === 'Sign' ? ' (ECDSA P-256)' : ''}`, na: op === 'Sign' ? 'n/a until issue 5 lands' : 'n/a' });
        continue;
      }
      log(`${op}: warm-up ${WARMUP} s, then ${SECONDS} s at ${CONNECTIONS} connections`);
      if (WARMUP > 0) await load(daemon.port, await presign(daemon.port, op, bodies[op]), WARMUP, daemon.child.pid);
      const r = await load(daemon.port, await presign(daemon.port, op, bodies[op]), SECONDS, daemon.child.pid);
      if (r.non2xx || r.errors || r.timeouts) log(`${op}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
      log(`${op}: ${fmt(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, peak RSS ${fmt(r.peakRssMb)} MB, daemon CPU ${fmt(r.cpuUsPerReq)} µs/request (of which system ${fmt(r.sysUsPerReq)}; ${r.daemonCores.toFixed(2)} cores; load generator ${r.loadCores.toFixed(2)} cores)`);
      rows.push({ name: `daemon ${op}${op === 'Sign' ? ' (ECDSA P-256)' : ''}`, ...r });
    }
  } finally {
    const hwm = rssMb(daemon.child.pid).hwm;
    daemon.child.kill('SIGTERM');
    await new Promise((r) => daemon.child.once('exit', r));
    rows.hwm = hwm;
  }

  if (ROWS.includes('XKS')) rows.push(xksRow());
  const hsm = ROWS.includes('HSM') ? await hsmRows(dir, conf) : [];

  log('limit again (the machine is shared: the ratio uses the mean of both runs)');
  const limitAfter = await runNode(limitArgs, limitEnv);
  const limit = (limitBefore.rps + limitAfter.rps) / 2;
  const loadAfter = loadavg();
  if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });

  const lines = [
    `Machine: ${info.cpu}, ${info.memory} RAM, ${info.os}, Node ${info.node}, ${info.softhsm}.`,
    `Load average (1/5/15 min) before: ${loadBefore}; after: ${loadAfter}.`,
    `Daemon: one process, 8 token sessions, audit on (durability ${JSON.parse(process.env.BENCH_DAEMON_ENV ?? '{}').P11KMS_AUDIT_DURABILITY ?? 'fsync'}, fail-closed), SigV4 and authorization on every request, log level info.`,
    `Load: autocannon in a separate process, ${CONNECTIONS} connections, keep-alive, ${SECONDS} s per row after ${WARMUP} s warm-up, 64 distinct pre-signed requests per row; 32-byte plaintexts, encryption context {"purpose":"bench"}. Daemon latencies are autocannon's (1 ms resolution); the limit's are per call.`,
    '',
    '| Measurement | Concurrency | Requests/s | p50 (ms) | p99 (ms) | Peak RSS (MB) | Daemon CPU per request (µs) | ÷ limit |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    `| **limit**: AES-256-GCM encrypt, 32 B + ${AAD_BYTES} B AAD, token-object key, pkcs11js sync, 1 thread (before / after) | 1 | ${fmt(limitBefore.rps)} / ${fmt(limitAfter.rps)} | ${fmt(limitBefore.p50, 3)} | ${fmt(limitBefore.p99, 3)} | – | – | 1.00 |`,
  ];
  for (const r of rows) {
    if (r.na) lines.push(`| ${r.name} | – | ${r.na} | | | | | |`);
    else {
      const flag = r.non2xx || r.errors ? ` (${r.non2xx} non-2xx, ${r.errors} errors)` : '';
      lines.push(`| ${r.name}${flag} | ${CONNECTIONS} | ${fmt(r.rps)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.peakRssMb)} | ${fmt(r.cpuUsPerReq)} | ${(r.rps / limit).toFixed(2)} |`);
    }
  }
  lines.push('', `Daemon peak RSS over the whole run (VmHWM): ${fmt(rows.hwm)} MB. Ratios use the mean limit, ${fmt(limit)} ops/s.`);
  lines.push(...hsmTable(hsm));
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
