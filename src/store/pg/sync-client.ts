import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { Errors } from '../../errors.js';

/**
 * A synchronous PostgreSQL connection. The MetadataStore interface is synchronous (it was
 * written for better-sqlite3, and the hot path reads it without awaiting); rather than make
 * every caller async, the PostgreSQL store keeps that interface: its reads are served from
 * memory (see store.ts, change-feed.ts) and only cache misses, writes and lists come here.
 *
 * A worker thread owns a node-postgres Client; the caller posts a query on a MessageChannel and
 * blocks in Atomics.wait until the worker has posted the answer (receiveMessageOnPort reads it
 * synchronously). Each call has a deadline: a database that does not answer becomes a
 * DependencyTimeoutException, never a hang. After a connection failure calls fail at once for
 * a short back-off, so a database that is away costs each request microseconds, not a timeout.
 */

export interface SyncPgOptions {
  url: string;
  /** Deadline of one statement (server side statement_timeout and the caller's wait). */
  queryTimeoutMs: number;
  connectTimeoutMs: number;
  applicationName: string;
}

export interface PgAnswer {
  rows: Record<string, unknown>[];
  rowCount: number;
  /** Connection generation: changes when the worker had to reconnect (a transaction cannot span it). */
  gen: number;
}

/** An error PostgreSQL itself returned (SQLSTATE code), as opposed to an unreachable database. */
export class PgError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly constraint: string | undefined,
  ) {
    super(message);
    this.name = 'PgError';
  }
}

/** Unreachable or failed mid-call: the client sees DependencyTimeoutException (503). */
export const unreachable = () => Errors.dependencyTimeout('The metadata database is not reachable; try again.');

const BACKOFF_MS = 200;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const pg = require(workerData.pg);
const { port, ctrl: sab, url, queryTimeoutMs, connectTimeoutMs, applicationName } = workerData;
const ctrl = new Int32Array(sab);
// BIGINT columns hold millisecond timestamps and counts: numbers, well inside 2^53.
const types = { getTypeParser: (oid, format) => oid === 20 ? Number : pg.types.getTypeParser(oid, format) };
let client, gen = 0;
async function connection() {
  if (client) return client;
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs, statement_timeout: queryTimeoutMs,
    query_timeout: queryTimeoutMs + 500, idle_in_transaction_session_timeout: queryTimeoutMs * 4, keepAlive: true,
    application_name: applicationName, types });
  const drop = () => { if (client === c) client = undefined; };
  c.on('error', drop);
  c.on('end', drop);
  try { await c.connect(); } catch (e) { c.end().catch(() => {}); throw e; }
  client = c;
  gen++;
  return c;
}
const toBuffer = (v) => v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;
port.on('message', async (req) => {
  let answer;
  try {
    if (req.reset) {
      const c = client; client = undefined;
      if (c) await c.end().catch(() => {});
      answer = { id: req.id, ok: true, rows: [], rowCount: 0, gen };
    } else {
      // A failed connection attempt is an unreachable database whatever its SQLSTATE (not accepting
      // connections 55000, unknown database 3D000, authentication 28P01 …): the statement never ran.
      const c = await connection().catch((e) => { throw Object.assign(e, { connecting: true }); });
      const r = await c.query({ text: req.sql, values: req.params.map(toBuffer) });
      const last = Array.isArray(r) ? r[r.length - 1] : r;
      answer = { id: req.id, ok: true, rows: last.rows || [], rowCount: last.rowCount || 0, gen };
    }
  } catch (e) {
    const server = !e.connecting && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && !/^(08|57P|53)/.test(e.code);
    if (!server) { const c = client; client = undefined; if (c) c.end().catch(() => {}); }
    answer = { id: req.id, ok: false, server, code: e.code, constraint: e.constraint, message: String(e.message).slice(0, 500), gen };
  }
  port.postMessage(answer);
  Atomics.add(ctrl, 0, 1);
  Atomics.notify(ctrl, 0);
});
`;

interface Answer {
  id: number;
  ok: boolean;
  server?: boolean;
  code?: string;
  constraint?: string;
  message?: string;
  rows: Record<string, unknown>[];
  rowCount: number;
  gen: number;
}

export class SyncPg {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly ctrl: Int32Array;
  private nextId = 0;
  private failedUntil = 0;
  private closed = false;
  /** When the server last answered a statement, and when one last failed for want of the database (unreachable, no answer by the deadline). */
  private lastOkAt = 0;
  private lastUnreachableAt = 0;
  /** What the driver said when the database was last unreachable: for the operator at start-up, never for clients. */
  lastUnreachableWhy: string | undefined;

  constructor(private readonly opts: SyncPgOptions) {
    const { port1, port2 } = new MessageChannel();
    const sab = new SharedArrayBuffer(4);
    this.ctrl = new Int32Array(sab);
    this.port = port1;
    const pg = createRequire(import.meta.url).resolve('pg');
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { port: port2, ctrl: sab, pg, ...opts },
      transferList: [port2],
    });
    this.worker.unref();
  }

  /** Runs one statement and waits for it; throws PgError (the server refused) or DependencyTimeoutException. */
  query(sql: string, params: readonly unknown[] = []): PgAnswer {
    if (this.closed) throw unreachable();
    if (Date.now() < this.failedUntil) throw this.noteUnreachable();
    const id = ++this.nextId;
    this.port.postMessage({ id, sql, params });
    const deadline = Date.now() + this.opts.queryTimeoutMs + this.opts.connectTimeoutMs + 1000;
    for (;;) {
      const seen = Atomics.load(this.ctrl, 0);
      const got = receiveMessageOnPort(this.port);
      if (got) {
        const a = got.message as Answer;
        if (a.id !== id) continue; // the late answer of a call that timed out
        if (a.ok) {
          this.lastOkAt = Date.now();
          return { rows: a.rows.map(buffers), rowCount: a.rowCount, gen: a.gen };
        }
        // statement_timeout: the server answered, but could not finish this statement in time (a lock
        // held elsewhere, overload). A 503 for this request; not a database away (readiness).
        if (a.code === '57014') throw Errors.dependencyTimeout('The metadata database did not complete the request in time; try again.');
        if (a.server) {
          this.lastOkAt = Date.now();
          throw new PgError(a.message ?? 'database error', a.code ?? 'XX000', a.constraint);
        }
        this.failedUntil = Date.now() + BACKOFF_MS;
        this.lastUnreachableWhy = a.message ?? 'connection failed';
        throw this.noteUnreachable();
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        this.failedUntil = Date.now() + BACKOFF_MS;
        this.lastUnreachableWhy = `no answer within ${this.opts.queryTimeoutMs + this.opts.connectTimeoutMs + 1000} ms`;
        this.port.postMessage({ id: ++this.nextId, reset: true });
        throw this.noteUnreachable();
      }
      Atomics.wait(this.ctrl, 0, seen, left);
    }
  }

  private noteUnreachable() {
    this.lastUnreachableAt = Date.now();
    return unreachable();
  }

  /** For readiness: when statements last succeeded and last failed for want of the database (0: never). */
  get outcomes(): { lastOkAt: number; lastUnreachableAt: number } {
    return { lastOkAt: this.lastOkAt, lastUnreachableAt: this.lastUnreachableAt };
  }

  /** Drops the worker's connection (after a failure inside a transaction whose state is unknown). */
  reset(): void {
    this.port.postMessage({ id: ++this.nextId, reset: true });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.port.postMessage({ id: ++this.nextId, reset: true });
    // Give the worker a moment to close its connection politely; terminate() ends it regardless.
    setTimeout(() => void this.worker.terminate(), 100).unref();
    this.port.close();
  }
}

/** Structured cloning turns Buffers into Uint8Arrays; the store's callers expect Buffers (bytea). */
function buffers(row: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(row)) {
    if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }
  return row;
}
