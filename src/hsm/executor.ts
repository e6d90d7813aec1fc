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
 * Each worker owns a shared buffer: a control word and a data area. The main thread writes a
 * job into the data area and sets the control word to REQUEST (waking the worker with
 * Atomics.notify); the worker answers in the same area and sets RESPONSE; the main thread,
 * waiting with Atomics.waitAsync, reads the answer and sets IDLE. No message serialization,
 * no MessagePort: one futex wake each way.
 */
const IDLE = 0;
const REQUEST = 1;
const RESPONSE = 2;
/** Control words, then the data area: big enough for the largest AAD (8 KiB context + 8 bytes per pair) and a 6 KiB blob. */
const HEADER = 16;
const AREA = 160 * 1024;

interface Job {
  msg: Buffer;
  resolve(b: Buffer): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  ctrl: Int32Array;
  data: Buffer;
  busy: boolean;
  job: Job | undefined;
  timer?: NodeJS.Timeout;
  /** Set when its call timed out: the worker is terminated as soon as the call returns. */
  retired?: () => void;
}

/** Atomics.waitAsync (V8 ≥ 8.7, Node ≥ 16), missing from the ES2022 type library. */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

/**
 * The worker (CommonJS, evaluated). Request layout: [kind u8][session len u8][key len u8][iv len u8]
 * [aad len u32][data len u32] then the bytes. Answer: [ok u8][pad][len u32] then the output, or
 * [0][code i32][name + '\n' + message] on failure (ok 0 = failed in Init, 2 = failed in the operation).
 */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const pkcs11js = require(workerData.pkcs11js);
const p = new pkcs11js.PKCS11();
p.load(workerData.module);
try { p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK }); } catch (e) { if (e.code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e; }
const ctrl = new Int32Array(workerData.sab, 0, 4);
const b = Buffer.from(workerData.sab, ${HEADER});
for (;;) {
  for (;;) {
    const v = Atomics.load(ctrl, 0);
    if (v === ${REQUEST}) break;
    Atomics.wait(ctrl, 0, v);
  }
  let phase = 0;
  try {
    let at = 12;
    const take = (n) => { const v = Buffer.from(b.subarray(at, at + n)); at += n; return v; };
    const kind = b[0];
    const session = take(b[1]);
    const key = take(b[2]);
    const iv = take(b[3]);
    const aadLen = b.readUInt32BE(4);
    const dataLen = b.readUInt32BE(8);
    const aad = take(aadLen);
    const data = take(dataLen);
    const mech = { mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_GCM, iv, aad, ivBits: iv.length * 8, tagBits: 128 } };
    let out;
    if (kind === 1) {
      p.C_EncryptInit(session, mech, key);
      phase = 2;
      out = p.C_Encrypt(session, data, Buffer.alloc(data.length + 16));
    } else {
      p.C_DecryptInit(session, mech, key);
      phase = 2;
      out = p.C_Decrypt(session, data, Buffer.alloc(data.length));
    }
    b[0] = 1;
    b.writeUInt32BE(out.length, 4);
    out.copy(b, 8);
  } catch (e) {
    b[0] = phase === 2 ? 2 : 0;
    b.writeInt32BE(typeof e.code === 'number' ? e.code : -1, 4);
    const text = Buffer.from(String(e.name) + '\\n' + String(e.message).slice(0, 1000));
    b.writeUInt32BE(text.length, 8);
    text.copy(b, 12);
  }
  Atomics.store(ctrl, 0, ${RESPONSE});
  Atomics.notify(ctrl, 0);
}
`;

export class TokenExecutor {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private closed = false;
  private readonly pkcs11jsPath = createRequire(import.meta.url).resolve('pkcs11js');

  /** At most `threads` workers, started on demand; a call without an answer after `timeoutMs` fails with TokenCallTimeout (0: no limit). */
  constructor(
    private readonly modulePath: string,
    private readonly threads = Math.max(2, cpus().length),
    private readonly timeoutMs = 0,
  ) {}

  gcm(kind: Kind, session: Buffer, key: Buffer, iv: Buffer, aad: Buffer, data: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error('token executor closed'));
    const size = 12 + session.length + key.length + iv.length + aad.length + data.length;
    if (size > AREA - 64) return Promise.reject(new Error('token call too large for the executor'));
    const msg = Buffer.allocUnsafe(size);
    msg[0] = KIND[kind];
    msg[1] = session.length;
    msg[2] = key.length;
    msg[3] = iv.length;
    msg.writeUInt32BE(aad.length, 4);
    msg.writeUInt32BE(data.length, 8);
    let at = 12;
    for (const part of [session, key, iv, aad, data]) at += part.copy(msg, at);
    return new Promise<Buffer>((resolve, reject) => {
      const job: Job = { msg, resolve, reject };
      const slot = this.slots.find((x) => !x.busy) ?? (this.slots.length < this.threads ? this.spawn() : undefined);
      if (slot) this.dispatch(slot, job);
      else this.queue.push(job);
    });
  }

  private spawn(): Slot {
    const sab = new SharedArrayBuffer(HEADER + AREA);
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: this.modulePath, pkcs11js: this.pkcs11jsPath, sab } });
    const slot: Slot = { worker, ctrl: new Int32Array(sab, 0, 4), data: Buffer.from(sab, HEADER), busy: false, job: undefined };
    const lost = (why: string) => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      slot.busy = true; // never reused
      slot.job?.reject(new Error(`token worker ${why}`));
      slot.job = undefined;
      const waiting = this.queue.shift();
      if (waiting && !this.closed) this.dispatch(this.spawn(), waiting);
      if (!this.closed) process.emitWarning(`token worker ${why}`);
    };
    worker.on('error', (e) => lost(`failed: ${e.message}`));
    worker.on('exit', () => {
      if (!slot.retired) lost('exited');
    });
    worker.unref();
    this.slots.push(slot);
    return slot;
  }

  private dispatch(slot: Slot, job: Job): void {
    slot.busy = true;
    slot.job = job;
    // Referenced while it works, so the process waits for the answer (waitAsync alone does not keep it alive).
    slot.worker.ref();
    job.msg.copy(slot.data, 0);
    Atomics.store(slot.ctrl, 0, REQUEST);
    Atomics.notify(slot.ctrl, 0);
    if (this.timeoutMs > 0) slot.timer = setTimeout(() => this.retire(slot, job), this.timeoutMs);
    const waited = waitAsync(slot.ctrl, 0, REQUEST);
    const settle = () => this.settle(slot, job);
    if (waited.async) void (waited.value as Promise<string>).then(settle);
    else settle();
  }

  /**
   * The call hung: fail it now, take the worker out of service (it is blocked in the module and
   * cannot be interrupted) and let queued work go to a fresh worker.
   */
  private retire(slot: Slot, job: Job): void {
    if (slot.job !== job) return;
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    slot.job = undefined;
    slot.worker.unref();
    const settled = new Promise<void>((resolve) => {
      slot.retired = resolve;
    });
    job.reject(new TokenCallTimeout(this.timeoutMs, settled));
    const waiting = this.queue.shift();
    if (waiting && !this.closed) this.dispatch(this.spawn(), waiting);
  }

  private settle(slot: Slot, job: Job): void {
    if (slot.retired) {
      if (Atomics.load(slot.ctrl, 0) === RESPONSE) {
        slot.retired();
        void slot.worker.terminate();
      } else {
        const again = waitAsync(slot.ctrl, 0, REQUEST);
        if (again.async) void (again.value as Promise<string>).then(() => this.settle(slot, job));
        else queueMicrotask(() => this.settle(slot, job));
      }
      return;
    }
    if (slot.job !== job) return; // the worker died or timed out and the job was rejected
    if (Atomics.load(slot.ctrl, 0) !== RESPONSE) {
      // Woken without an answer: wait again.
      const again = waitAsync(slot.ctrl, 0, REQUEST);
      if (again.async) void (again.value as Promise<string>).then(() => this.settle(slot, job));
      else queueMicrotask(() => this.settle(slot, job));
      return;
    }
    slot.job = undefined;
    clearTimeout(slot.timer);
    slot.worker.unref();
    const d = slot.data;
    if (d[0] === 1) {
      job.resolve(Buffer.from(d.subarray(8, 8 + d.readUInt32BE(4))));
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
    Atomics.store(slot.ctrl, 0, IDLE);
    slot.busy = false;
    const next = this.queue.shift();
    if (next) this.dispatch(slot, next);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0)) j.reject(new Error('token executor closed'));
    await Promise.all(this.slots.splice(0).map((x) => x.worker.terminate()));
  }
}
