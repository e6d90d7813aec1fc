import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { Worker } from 'node:worker_threads';
import type pkcs11js from 'pkcs11js';

/**
 * A token call that did not answer within the executor's timeout (a hung network HSM). The worker
 * stays blocked inside the module and is retired; `settled` resolves once the call finally
 * returns, so the caller can close the session it was using then and not while it is in use.
 */
export class TokenCallTimeout extends Error {
  constructor(
    readonly timeoutMs: number,
    readonly settled: Promise<void>,
  ) {
    super(`token call did not answer within ${timeoutMs} ms`);
  }
}

/**
 * The asynchronous calls (run on the libuv pool) that get the per-call timeout: the per-request
 * cryptographic ones. Key generation is left unbounded: an RSA-4096 key pair takes seconds on a
 * software token, longer under load, and is not a sign of a hung HSM.
 */
const TIMED_CALLS = new Set([
  'C_EncryptAsync', 'C_DecryptAsync', 'C_SignAsync', 'C_VerifyAsync', 'C_DigestAsync', 'C_WrapKeyAsync', 'C_UnwrapKeyAsync', 'C_DeriveKeyAsync',
]);

/**
 * The module with a timeout on its per-request asynchronous calls (TIMED_CALLS): one that has not
 * settled after `timeoutMs` rejects with TokenCallTimeout. The libuv thread stays inside the
 * module until the call returns; `settled` says when.
 */
export function withCallTimeout(p: pkcs11js.PKCS11, timeoutMs: number): pkcs11js.PKCS11 {
  // Native methods must be called on the real object, never on the proxy: bound once, cached.
  const bound = new Map<string | symbol, unknown>();
  return new Proxy(p, {
    get(target, name) {
      const known = bound.get(name);
      if (known) return known;
      const value = Reflect.get(target, name) as unknown;
      if (typeof value !== 'function') return value;
      const fn = typeof name === 'string' && TIMED_CALLS.has(name) ? timed(target, value as (...a: unknown[]) => Promise<unknown>) : value.bind(target);
      bound.set(name, fn);
      return fn;
    },
  });

  function timed(target: pkcs11js.PKCS11, value: (...a: unknown[]) => Promise<unknown>) {
      return (...args: unknown[]) => {
        const call = (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        let timer: NodeJS.Timeout | undefined;
        const settled = call.then(
          () => undefined,
          () => undefined,
        );
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new TokenCallTimeout(timeoutMs, settled)), timeoutMs);
        });
        return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
      };
  }
}

/** Errors from a worker carry the PKCS#11 code (like pkcs11js errors) and the phase that failed. */
export function failedPhase(e: unknown): string | undefined {
  return (e as { phase?: string } | null)?.phase;
}

/**
 * Runs single-shot token operations (C_xxxInit + C_xxx) on worker threads.
 *
 * Why: pkcs11js has no asynchronous C_EncryptInit/C_DecryptInit/C_SignInit, and with SoftHSM2
 * the Init is most of the work for a token object (it re-checks the object file on disk and
 * decrypts the key: ~30 µs, against ~4 µs for the C_Encrypt itself). Called on the main thread,
 * it blocks the event loop for every request, longer still when other sessions hold the
 * token's locks. A worker does the whole operation synchronously instead; the event loop only
 * posts a message and gets one back.
 *
 * Workers share the process's PKCS#11 module (C_Initialize answers ALREADY_INITIALIZED there,
 * and session and object handles are process-wide). They never call C_Finalize; the pkcs11js
 * object in a worker only dlclose()s its reference when the worker ends.
 */

type Kind = 'gcm-encrypt' | 'gcm-decrypt';
const KIND: Record<Kind, number> = { 'gcm-encrypt': 1, 'gcm-decrypt': 2 };

/**
 * Each worker owns a shared buffer of LANES lanes; a lane holds one job at a time. Control words:
 * DOORBELL (the main thread adds 1 after putting a job in a lane), SLEEPING (1 while the worker
 * may be in Atomics.wait), then one state word per lane: IDLE → REQUEST (main thread) →
 * RESPONSE (worker) → IDLE (main thread, after reading the answer). All workers count finished
 * jobs in one shared word (DONE) that the main thread waits on with a single Atomics.waitAsync.
 *
 * Why lanes instead of one job per wake-up (the earlier version): under the Encrypt bench row
 * the hand-off was the largest item of the main thread's profile (dispatch 6 % self, settle 4 %),
 * and each job cost a futex wake of the worker and an event-loop wake-up of the main thread.
 * Now a busy worker takes the next lane without being woken (the main thread notifies only a
 * sleeping worker), and one main-thread wake-up settles every job finished by then. Jobs are
 * written straight into the lane and the worker reads them in place (pkcs11js takes views of
 * the shared memory), with its output written into the lane: one copy in, one copy out, instead
 * of four. Measured A/B figures are in README, "What was profiled and removed".
 */
const IDLE = 0;
const REQUEST = 1;
const RESPONSE = 2;
/** Claimed by the worker (compare-exchange from REQUEST), so the main thread can take back a lane the worker has not started. */
const RUNNING = 3;
const LANES = 4;
const DOORBELL = 0;
const SLEEPING = 1;
const LANE0 = 2;
const CONTROL_BYTES = 4 * (LANE0 + LANES);
/** Per lane: big enough for the largest AAD (8 KiB context + 8 bytes per pair), a 6 KiB blob, and the output after it. */
const AREA = 160 * 1024;
/** Request: [kind u8][session len u8][key len u8][iv len u8][aad len u32][data len u32], then the bytes. */
const REQUEST_HEADER = 12;

interface Job {
  kind: number;
  session: Buffer;
  key: Buffer;
  iv: Buffer;
  aad: Buffer;
  data: Buffer;
  resolve(b: Buffer): void;
  reject(e: Error): void;
  /** When it was put in a lane (Date.now), for the call timeout. */
  started?: number;
}

interface WorkerSlot {
  worker: Worker;
  ctrl: Int32Array;
  lanes: Buffer[];
  jobs: (Job | undefined)[];
  inflight: number;
}

/** Atomics.waitAsync (V8 ≥ 8.7, Node ≥ 16), missing from the ES2022 type library. */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

/**
 * The worker (CommonJS, evaluated). It runs every lane in REQUEST state, then sleeps on the
 * doorbell. Answer in the lane: [ok u8][pad][len u32][output offset u32] with the output at that
 * offset, or [status][code i32][text len u32][name + '\n' + message] on failure
 * (status 0 = failed in Init, 2 = failed in the operation).
 */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const pkcs11js = require(workerData.pkcs11js);
const p = new pkcs11js.PKCS11();
p.load(workerData.module);
try { p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK }); } catch (e) { if (e.code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e; }
const ctrl = new Int32Array(workerData.sab, 0, ${LANE0 + LANES});
const done = new Int32Array(workerData.done);
const lanes = [];
for (let i = 0; i < ${LANES}; i++) lanes.push(Buffer.from(workerData.sab, ${CONTROL_BYTES} + i * ${AREA}, ${AREA}));
function run(b) {
  let phase = 0;
  try {
    let at = ${REQUEST_HEADER};
    const view = (n) => { const v = b.subarray(at, at + n); at += n; return v; };
    const kind = b[0];
    const session = view(b[1]);
    const key = view(b[2]);
    const iv = view(b[3]);
    const aad = view(b.readUInt32BE(4));
    const data = view(b.readUInt32BE(8));
    const mech = { mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_GCM, iv, aad, ivBits: iv.length * 8, tagBits: 128 } };
    let out;
    if (kind === 1) {
      p.C_EncryptInit(session, mech, key);
      phase = 2;
      out = p.C_Encrypt(session, data, b.subarray(at, at + data.length + 16));
    } else {
      p.C_DecryptInit(session, mech, key);
      phase = 2;
      out = p.C_Decrypt(session, data, b.subarray(at, at + data.length));
    }
    // pkcs11js answers with a view of the output buffer given; copied in case a version does not.
    if (out.buffer !== b.buffer || out.byteOffset !== b.byteOffset + at) out.copy(b, at);
    b[0] = 1;
    b.writeUInt32BE(out.length, 4);
    b.writeUInt32BE(at, 8);
  } catch (e) {
    b[0] = phase === 2 ? 2 : 0;
    b.writeInt32BE(typeof e.code === 'number' ? e.code : -1, 4);
    const text = Buffer.from(String(e.name) + '\\n' + String(e.message).slice(0, 1000));
    b.writeUInt32BE(text.length, 8);
    text.copy(b, 12);
  }
}
let seen = Atomics.load(ctrl, ${DOORBELL});
for (;;) {
  let ran = false;
  for (let i = 0; i < ${LANES}; i++) {
    if (Atomics.compareExchange(ctrl, ${LANE0} + i, ${REQUEST}, ${RUNNING}) !== ${REQUEST}) continue;
    run(lanes[i]);
    Atomics.store(ctrl, ${LANE0} + i, ${RESPONSE});
    Atomics.add(done, 0, 1);
    Atomics.notify(done, 0);
    ran = true;
  }
  if (ran) continue;
  // Announce the sleep before the last look at the doorbell: a job published after that look
  // changes the doorbell (so the wait returns at once) and finds SLEEPING set (so it notifies).
  Atomics.store(ctrl, ${SLEEPING}, 1);
  const v = Atomics.load(ctrl, ${DOORBELL});
  if (v === seen) Atomics.wait(ctrl, ${DOORBELL}, v);
  Atomics.store(ctrl, ${SLEEPING}, 0);
  seen = Atomics.load(ctrl, ${DOORBELL});
}
`;

export class TokenExecutor {
  private readonly workers: WorkerSlot[] = [];
  /** Jobs waiting for a free lane, with their caller's buffers (copied into a lane when it frees). */
  private readonly queue: Job[] = [];
  private readonly done = new Int32Array(new SharedArrayBuffer(4));
  /** DONE as of the last drain; the main thread waits for it to change. */
  private doneSeen = 0;
  private armed = false;
  private inflight = 0;
  private closed = false;
  private readonly pkcs11jsPath = createRequire(import.meta.url).resolve('pkcs11js');

  /** Sweeps in-flight jobs for the call timeout: one timer per executor, not one per call. */
  private sweeper: NodeJS.Timeout | undefined;

  /** At most `threads` workers, started on demand; a call without an answer after `timeoutMs` fails with TokenCallTimeout (0: no limit). */
  constructor(
    private readonly modulePath: string,
    private readonly threads = Math.max(2, cpus().length),
    private readonly timeoutMs = 0,
  ) {
    if (timeoutMs > 0) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(10, Math.min(1000, timeoutMs / 4)));
      this.sweeper.unref();
    }
  }

  /** A worker with a job in flight for longer than the timeout is stuck in the module: retire it. */
  private sweep(): void {
    const now = Date.now();
    for (const w of [...this.workers]) {
      if (w.jobs.some((j) => j?.started !== undefined && now - j.started > this.timeoutMs)) this.retire(w);
    }
  }

  /**
   * The worker is blocked inside the module and cannot be interrupted: take it out of service.
   * Lanes it has not started go back to the queue; answers it already wrote are delivered; the
   * call it is stuck in fails with TokenCallTimeout, whose `settled` resolves (and the worker
   * ends) once the module returns.
   */
  private retire(w: WorkerSlot): void {
    const i = this.workers.indexOf(w);
    if (i < 0) return;
    this.workers.splice(i, 1);
    let stuck = -1;
    let stuckJob: Job | undefined;
    for (let lane = 0; lane < LANES; lane++) {
      const job = w.jobs[lane];
      if (!job) continue;
      const state = Atomics.compareExchange(w.ctrl, LANE0 + lane, REQUEST, IDLE);
      if (state === RESPONSE) {
        this.settle(w, lane, job, false);
        continue;
      }
      w.jobs[lane] = undefined;
      this.inflight--;
      w.inflight--;
      if (state === REQUEST) this.queue.unshift(job);
      else {
        stuck = lane;
        stuckJob = job;
      }
    }
    const settled = new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (stuck >= 0 && Atomics.load(w.ctrl, LANE0 + stuck) !== RESPONSE) return;
        clearInterval(poll);
        resolve();
        void w.worker.terminate();
      }, 50);
      poll.unref();
    });
    stuckJob?.reject(new TokenCallTimeout(this.timeoutMs, settled));
    w.worker.unref();
    while (!this.closed && this.queue.length && this.startOnFreeLane(this.queue[0]!)) this.queue.shift();
  }

  gcm(kind: Kind, session: Buffer, key: Buffer, iv: Buffer, aad: Buffer, data: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error('token executor closed'));
    const size = REQUEST_HEADER + session.length + key.length + iv.length + aad.length + 2 * data.length + 16;
    if (size > AREA) return Promise.reject(new Error('token call too large for the executor'));
    return new Promise<Buffer>((resolve, reject) => {
      const job: Job = { kind: KIND[kind], session, key, iv, aad, data, resolve, reject };
      if (!this.startOnFreeLane(job)) this.queue.push(job);
    });
  }

  /**
   * Puts the job in a lane of the least busy worker (a new worker while every worker is busy and
   * fewer than `threads` run), so that both cores work before lanes are stacked on one worker.
   */
  private startOnFreeLane(job: Job): boolean {
    let best: WorkerSlot | undefined;
    for (const w of this.workers) if (w.inflight < LANES && (!best || w.inflight < best.inflight)) best = w;
    if ((!best || best.inflight > 0) && this.workers.length < this.threads) best = this.spawn();
    if (!best) return false;
    this.start(best, best.jobs.indexOf(undefined), job);
    return true;
  }

  private start(w: WorkerSlot, lane: number, job: Job): void {
    const b = w.lanes[lane]!;
    b[0] = job.kind;
    b[1] = job.session.length;
    b[2] = job.key.length;
    b[3] = job.iv.length;
    b.writeUInt32BE(job.aad.length, 4);
    b.writeUInt32BE(job.data.length, 8);
    let at = REQUEST_HEADER;
    at += job.session.copy(b, at);
    at += job.key.copy(b, at);
    at += job.iv.copy(b, at);
    at += job.aad.copy(b, at);
    job.data.copy(b, at);
    w.jobs[lane] = job;
    if (this.timeoutMs > 0) job.started = Date.now();
    // Referenced while it works, so the process waits for the answer (waitAsync alone does not keep it alive).
    if (w.inflight++ === 0) w.worker.ref();
    this.inflight++;
    Atomics.store(w.ctrl, LANE0 + lane, REQUEST);
    Atomics.add(w.ctrl, DOORBELL, 1);
    if (Atomics.load(w.ctrl, SLEEPING) === 1) Atomics.notify(w.ctrl, DOORBELL);
    this.arm();
  }

  /** One pending wait for DONE while jobs are in flight. */
  private arm(): void {
    if (this.armed || this.inflight === 0) return;
    this.armed = true;
    const waited = waitAsync(this.done, 0, this.doneSeen);
    if (waited.async) void (waited.value as Promise<string>).then(this.wake);
    else queueMicrotask(this.wake);
  }

  private readonly wake = (): void => {
    this.armed = false;
    // Read before draining: a job finished after this read changes DONE again, so the next wait returns at once.
    this.doneSeen = Atomics.load(this.done, 0);
    for (const w of this.workers) {
      for (let lane = 0; lane < LANES; lane++) {
        const job = w.jobs[lane];
        if (job && Atomics.load(w.ctrl, LANE0 + lane) === RESPONSE) this.settle(w, lane, job);
      }
    }
    this.arm();
  };

  private settle(w: WorkerSlot, lane: number, job: Job, reuseLane = true): void {
    const d = w.lanes[lane]!;
    if (d[0] === 1) {
      const at = d.readUInt32BE(8);
      job.resolve(Buffer.from(d.subarray(at, at + d.readUInt32BE(4))));
    } else {
      const code = d.readInt32BE(4);
      const [name, ...rest] = d.subarray(12, 12 + d.readUInt32BE(8)).toString('utf8').split('\n');
      const e = Object.assign(new Error(rest.join('\n') || 'token call failed'), {
        code: code === -1 ? undefined : code,
        phase: d[0] === 2 ? 'op' : 'init',
      });
      e.name = name ?? 'Error';
      job.reject(e);
    }
    w.jobs[lane] = undefined;
    Atomics.store(w.ctrl, LANE0 + lane, IDLE);
    this.inflight--;
    if (--w.inflight === 0) w.worker.unref();
    if (!reuseLane) return;
    const next = this.queue.shift();
    if (next) this.start(w, lane, next);
  }

  private spawn(): WorkerSlot {
    const sab = new SharedArrayBuffer(CONTROL_BYTES + LANES * AREA);
    const worker = new Worker(WORKER_SOURCE, {
      eval: true, workerData: { module: this.modulePath, pkcs11js: this.pkcs11jsPath, sab, done: this.done.buffer },
    });
    const lanes = Array.from({ length: LANES }, (_, i) => Buffer.from(sab, CONTROL_BYTES + i * AREA, AREA));
    const w: WorkerSlot = { worker, ctrl: new Int32Array(sab, 0, LANE0 + LANES), lanes, jobs: new Array(LANES).fill(undefined), inflight: 0 };
    const lost = (why: string) => {
      const i = this.workers.indexOf(w);
      if (i < 0) return;
      this.workers.splice(i, 1);
      for (const job of w.jobs) job?.reject(new Error(`token worker ${why}`));
      this.inflight -= w.inflight;
      w.jobs.fill(undefined);
      w.inflight = 0;
      if (this.closed) return;
      process.emitWarning(`token worker ${why}`);
      while (this.queue.length && this.startOnFreeLane(this.queue[0]!)) this.queue.shift();
    };
    worker.on('error', (e) => lost(`failed: ${e.message}`));
    worker.on('exit', () => lost('exited')); // a retired worker is no longer in this.workers: lost() ignores it
    worker.unref();
    this.workers.push(w);
    return w;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const j of this.queue.splice(0)) j.reject(new Error('token executor closed'));
    const workers = this.workers.splice(0);
    for (const w of workers) for (const j of w.jobs) j?.reject(new Error('token worker exited'));
    await Promise.all(workers.map((x) => x.worker.terminate()));
  }
}
