// Shared by bench/run.js (the benchmark table) and bench/pair.js (A/B of two builds side by side):
// starting a daemon on a bench token, pre-signing requests, replaying them, and reading the
// daemon's CPU time from /proc.
import { Sha256 } from '@aws-crypto/sha256-js';
import { CreateKeyCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..');
export const MODULE = process.env.P11KMS_PKCS11_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';
export const CREDENTIALS = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };
export const REGION = 'us-east-1';
export const LABEL = 'p11kms-bench';
/** The daemon's AAD for these requests: 21-byte blob header + canonical {"purpose":"bench"} (24 bytes). */
export const ENCRYPTION_CONTEXT = { purpose: 'bench' };
export const AAD_BYTES = 21 + 4 + 8 + 'purpose'.length + 'bench'.length;

export const log = (m) => process.stderr.write(`bench: ${m}\n`);

/** A SoftHSM2 token for the run in DIR/softhsm; returns its SOFTHSM2_CONF and PIN file. */
export function makeToken(dir) {
  execFileSync(join(ROOT, 'softhsm/create-token.sh'), [join(dir, 'softhsm'), LABEL], { stdio: 'ignore' });
  return { conf: join(dir, 'softhsm', 'softhsm2.conf'), pinFile: join(dir, 'softhsm', 'user.pin') };
}

export function runNode(args, opts = {}) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'], ...opts });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolveRun(JSON.parse(out.trim().split('\n').at(-1))) : reject(new Error(`${args[0]} exited ${code}`))));
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

export function rssMb(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024, hwm: Number(/VmHWM:\s+(\d+)/.exec(status)[1]) / 1024 };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

/**
 * Starts `entry` (default dist/entry.cjs) on the token in DIR; `env` adds daemon environment.
 * Waits for `listeners` "p11kms listening" lines (one per worker process with P11KMS_WORKERS).
 */
export async function startDaemon(dir, conf, { entry, env = {}, cpuProfDir, listeners = 1 } = {}) {
  const args = [];
  if (cpuProfDir) args.push('--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`);
  args.push(resolve(entry ?? join(ROOT, 'dist/entry.cjs')), 'serve');
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
      // SoftHSM2 in process, as ./scripts/start runs it (worker threads for AES-GCM); the HSM rows override it.
      P11KMS_SOFTWARE_TOKEN: 'true',
      P11KMS_OBJECT_LIST: 'per-process',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const deadline = Date.now() + 30_000;
  while ((out.match(/"msg":"p11kms listening"/g) ?? []).length < listeners) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`daemon did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = JSON.parse(out.split('\n').find((l) => l.includes('p11kms listening'))).port;
  return { child, port, output: () => out };
}

/**
 * A symmetric key, an ECC signing key (when the token has EC), and 64 distinct request bodies
 * per operation: 32-byte plaintexts, encryption context {"purpose":"bench"}.
 */
export async function requestBodies(port) {
  const kms = new KMSClient({ endpoint: `http://127.0.0.1:${port}`, region: REGION, credentials: CREDENTIALS });
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
  const b64 = (b) => Buffer.from(b).toString('base64');
  return {
    Encrypt: samples.map((s) => JSON.stringify({ KeyId: key.KeyId, Plaintext: b64(s.pt), EncryptionContext: ENCRYPTION_CONTEXT })),
    Decrypt: samples.map((s) => JSON.stringify({ CiphertextBlob: b64(s.ct), EncryptionContext: ENCRYPTION_CONTEXT })),
    GenerateDataKey: samples.map(() => JSON.stringify({ KeyId: key.KeyId, KeySpec: 'AES_256', EncryptionContext: ENCRYPTION_CONTEXT })),
    Sign: signKey
      ? samples.map((s) =>
          JSON.stringify({ KeyId: signKey.KeyId, Message: b64(Buffer.alloc(32, s.pt[0])), MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' }))
      : undefined,
  };
}

/** A fresh symmetric key and 64 distinct Encrypt bodies for it (32-byte plaintexts, encryption context {"purpose":"bench"}). */
export async function encryptBodies(port, description) {
  const kms = new KMSClient({ endpoint: `http://127.0.0.1:${port}`, region: REGION, credentials: CREDENTIALS });
  const key = (await kms.send(new CreateKeyCommand({ Description: description }))).KeyMetadata;
  kms.destroy();
  return Array.from({ length: 64 }, (_, i) =>
    JSON.stringify({ KeyId: key.KeyId, Plaintext: Buffer.alloc(32, i).toString('base64'), EncryptionContext: ENCRYPTION_CONTEXT }));
}

/** A pool of distinct requests, each signed now (SigV4 allows 5 minutes of skew: each row re-signs). */
export async function presign(port, target, bodies) {
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

/**
 * CPU time (ms) per thread (main thread, token workers, libuv pool, V8 helpers) of a process so
 * far; of several (a supervisor, then its workers), the supervisor's main thread is `supervisor`
 * and worker n's `main<n>`.
 */
export function threadCpuMs(pids) {
  const out = {};
  const all = [pids].flat();
  for (const [i, pid] of all.entries()) {
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        // Node names no thread here (all 'node'): the main thread is the one whose id is the pid.
        const main = all.length === 1 ? 'main' : i === 0 ? 'supervisor' : `main${i}`;
        const name = tid === String(pid) ? main : `t${tid}`;
        const f = stat.split(') ')[1].split(' ');
        out[name] = (out[name] ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / 100;
      }
    } catch {
      /* the process ended */
    }
  }
  return out;
}

/** A process and its children (a worker supervisor and its workers), from their parent pids in /proc. */
export function withChildren(pid) {
  const children = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      /* the process ended */
    }
  }
  return [pid, ...children];
}

/** CPU time (user + system, ms) a process has used so far; `sys` alone when asked. */
export function cpuMs(pid, sysOnly = false) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((sysOnly ? Number(f[12]) : Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/**
 * Replays `requests` for `seconds` (autocannon in its own process, or bench/sequential.js for
 * `sequential`: one connection, one request at a time) and measures the daemon meanwhile: `pids`
 * is its pid, or the pids whose CPU and RSS add up (a supervisor and its workers). `processes`
 * autocannon processes share the connections (and the rate); their counts add up, their
 * percentiles are the worst process's.
 */
export async function load(port, requests, seconds, pids, { connections, rate, sequential = false, processes = 1 }) {
  const daemon = [pids].flat();
  const sum = (f) => daemon.reduce((a, pid) => a + f(pid), 0);
  const cpu0 = sum((pid) => cpuMs(pid));
  const sys0 = sum((pid) => cpuMs(pid, true));
  const threads0 = threadCpuMs(daemon);
  const rss = () => sum((pid) => rssMb(pid).rss);
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, rss());
  }, 50);
  try {
    const share = (i) => Math.floor(connections / processes) + (i < connections % processes ? 1 : 0);
    const runs = await Promise.all(Array.from({ length: processes }, (_, i) => {
      const job = JSON.stringify({ url: `http://127.0.0.1:${port}`, connections: share(i), seconds, requests, rate: rate && rate / processes });
      return runNode([join(ROOT, sequential ? 'bench/sequential.js' : 'bench/load.js')], { input: job });
    }));
    const total = (k) => runs.reduce((a, x) => a + x[k], 0);
    const worst = (k) => Math.max(...runs.map((x) => x[k]));
    const r = runs.length === 1 ? runs[0] : {
      ok: total('ok'), non2xx: total('non2xx'), errors: total('errors'), timeouts: total('timeouts'), seconds: worst('seconds'),
      rps: total('rps'), p50: worst('p50'), p99: worst('p99'), max: worst('max'), cpuMs: total('cpuMs'),
    };
    const cpu = sum((pid) => cpuMs(pid)) - cpu0;
    const sys = sum((pid) => cpuMs(pid, true)) - sys0;
    const threads = Object.entries(threadCpuMs(daemon))
      .map(([name, ms]) => [name, ((ms - (threads0[name] ?? 0)) * 1000) / Math.max(1, r.ok)])
      .filter(([, us]) => us >= 1)
      .sort((a, b) => b[1] - a[1]);
    return {
      ...r, peakRssMb: Math.max(peak, rss()), cpuUsPerReq: (cpu * 1000) / Math.max(1, r.ok),
      sysUsPerReq: (sys * 1000) / Math.max(1, r.ok), daemonCores: cpu / 1000 / r.seconds, loadCores: r.cpuMs / 1000 / r.seconds,
      loadProcesses: processes, busiestLoadCores: Math.max(...runs.map((x) => x.cpuMs / 1000 / x.seconds)),
      threads: threads.map(([name, us]) => `${name} ${us.toFixed(0)}`).join(', '),
    };
  } finally {
    clearInterval(timer);
  }
}
