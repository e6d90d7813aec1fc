import { Errors } from '../errors.js';

/**
 * A bounded pool of PKCS#11 sessions: one operation per session at a time, callers wait in
 * FIFO order for a free one (bounded wait and bounded queue). Sessions opened before a
 * recovery belong to an older generation and are closed instead of reused.
 */
export interface PoolOptions<S> {
  max: number;
  waitMs: number;
  maxWaiters: number;
  open(): S;
  close(session: S): void;
}

interface Waiter<S> {
  resolve(s: Pooled<S>): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export interface Pooled<S> {
  session: S;
  generation: number;
}

export class SessionPool<S> {
  private idle: Pooled<S>[] = [];
  private waiters: Waiter<S>[] = [];
  private total = 0;
  private generation = 0;
  private closed = false;
  private closedError: () => Error = () => Errors.dependencyTimeout('The key store is shutting down.');

  constructor(private readonly opts: PoolOptions<S>) {}

  stats(): { size: number; idle: number; inUse: number; waiting: number; max: number } {
    return {
      size: this.total,
      idle: this.idle.length,
      inUse: this.total - this.idle.length,
      waiting: this.waiters.length,
      max: this.opts.max,
    };
  }

  acquire(): Promise<Pooled<S>> {
    if (this.closed) return Promise.reject(this.closedError());
    const ready = this.idle.pop();
    if (ready) return Promise.resolve(ready);
    if (this.total < this.opts.max) {
      // Opening can fail (token gone); the caller's recovery logic handles that error.
      const session = this.opts.open();
      this.total++;
      return Promise.resolve({ session, generation: this.generation });
    }
    if (this.waiters.length >= this.opts.maxWaiters) {
      return Promise.reject(Errors.throttling('Rate exceeded: all token sessions are busy.'));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter<S> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(Errors.dependencyTimeout('Timed out waiting for a free session with the key store.'));
        }, this.opts.waitMs),
      };
      this.waiters.push(waiter);
    });
  }

  /**
   * Return a session; `broken` sessions (or ones from before a recovery) are closed, not reused.
   * `closeAfter`: a call still runs on it (timed out), so it is closed only when that settles.
   */
  release(p: Pooled<S>, broken = false, closeAfter?: Promise<void>): void {
    if (broken || p.generation !== this.generation || this.closed) {
      if (closeAfter) {
        this.total--;
        void closeAfter.then(() => this.discard({ ...p }, false));
      } else {
        this.discard(p);
      }
      // A slot freed up: let the next waiter open a fresh session.
      const next = this.waiters.shift();
      if (next) {
        clearTimeout(next.timer);
        try {
          const session = this.opts.open();
          this.total++;
          next.resolve({ session, generation: this.generation });
        } catch (e) {
          next.reject(e as Error);
        }
      }
      return;
    }
    const next = this.waiters.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve(p);
    } else {
      this.idle.push(p);
    }
  }

  /** Forget every session: idle ones are closed now, busy ones when they come back. */
  invalidate(): void {
    this.generation++;
    for (const p of this.idle.splice(0)) this.discard(p);
  }

  close(error: () => Error = () => Errors.dependencyTimeout('The key store is shutting down.')): void {
    this.closed = true;
    this.closedError = error;
    this.invalidate();
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(error());
    }
  }

  private discard(p: Pooled<S>, counted = true): void {
    if (counted) this.total--;
    try {
      this.opts.close(p.session);
    } catch {
      // Already gone on the token side: nothing to release.
    }
  }
}
