import client from 'prom-client';
import type { Token } from '../hsm/token.js';
import { databaseAway, whileDatabaseUp } from '../kms/health.js';
import type { DatabaseHealth } from '../model/database-health.js';
import type { MetadataStore } from '../store/types.js';

/**
 * The daemon's Prometheus metrics (one registry per process). Other modules import the named
 * metrics below and update them; gauges that mirror live state (session pool, token, keys)
 * are read at scrape time from what bindMetrics() was given.
 *
 * The key lifecycle scheduler (src/kms/scheduler.ts) counts `jobRuns.inc({ job })` per job per
 * tick and `jobFailures.inc({ job })` per run in which an item failed.
 * Custom key store states are read from the key store registry at scrape time.
 */
export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const FAST_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1];

export const requests = new client.Counter({
  name: 'p11kms_requests_total',
  help: 'Requests by front door, operation and outcome (success, client_error, server_error).',
  labelNames: ['front_door', 'operation', 'outcome'] as const,
  registers: [registry],
});

export const requestErrors = new client.Counter({
  name: 'p11kms_request_errors_total',
  help: 'Failed requests by front door, operation and error code.',
  labelNames: ['front_door', 'operation', 'code'] as const,
  registers: [registry],
});

export const requestDuration = new client.Histogram({
  name: 'p11kms_request_duration_seconds',
  help: 'Time from request received to response sent, by front door and operation.',
  labelNames: ['front_door', 'operation'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const tokenCallDuration = new client.Histogram({
  name: 'p11kms_token_call_duration_seconds',
  help: 'Time spent in the PKCS#11 token per call (session wait excluded), by mechanism, operation and outcome.',
  labelNames: ['mechanism', 'operation', 'outcome'] as const,
  buckets: FAST_BUCKETS,
  registers: [registry],
});

export const auditWriteDuration = new client.Histogram({
  name: 'p11kms_audit_write_duration_seconds',
  help: 'Time to append one batch of audit records (write, plus fdatasync when the durability setting asks for it).',
  buckets: FAST_BUCKETS,
  registers: [registry],
});

export const auditEvents = new client.Counter({
  name: 'p11kms_audit_events_total',
  help: 'Audit events by outcome (written, failed).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const auditSeals = new client.Counter({
  name: 'p11kms_audit_seals_total',
  help: 'Audit chain seals (HMAC in the token) by outcome (ok, failed).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const jobRuns = new client.Counter({
  name: 'p11kms_job_runs_total',
  help: 'Key lifecycle job runs, one per job per scheduler tick (job: deletion, material-expiry, rotation, import-token-expiry, replica-sync).',
  labelNames: ['job'] as const,
  registers: [registry],
});

export const jobFailures = new client.Counter({
  name: 'p11kms_job_failures_total',
  help: 'Key lifecycle job runs in which an item failed (it is retried on the next tick), by job.',
  labelNames: ['job'] as const,
  registers: [registry],
});

interface Bound {
  token?: Token | undefined;
  store?: MetadataStore | undefined;
  audit?: (() => { healthy: boolean; seq: number }) | undefined;
  /** The custom key store registry: every store and its connection state. */
  keyStores?: { summary(): { id: string; state: string; local: { state: string } }[] } | undefined;
  /** How this node sees its metadata database (src/kms/health.ts databaseHealth). */
  database?: (() => DatabaseHealth) | undefined;
}
const bound: Bound = {};

/** The custom key stores are database rows: none while the database is away (see p11kms_keys) or if reading them fails. */
const keyStoreSummary = () => whileDatabaseUp(bound.database?.(), () => bound.keyStores?.summary()) ?? [];

const STORE_STATES = ['CONNECTED', 'CONNECTING', 'DISCONNECTED', 'DISCONNECTING', 'FAILED'] as const;
/** Read at scrape time from the key store registry: every store, 1 for its current state and 0 for the others. */
export const customKeyStoreState = new client.Gauge({
  name: 'p11kms_custom_key_store_connection_state',
  help: 'Custom key store connection state: 1 for the current state of each store.',
  labelNames: ['custom_key_store_id', 'state'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const s of keyStoreSummary()) {
      for (const state of STORE_STATES) this.set({ custom_key_store_id: s.id, state }, s.state === state ? 1 : 0);
    }
  },
});

/**
 * This node's own sessions to each store that should be connected (shared state CONNECTED, or
 * FAILED and being retried): 1 while it serves the store's keys, 0 while it cannot reach the
 * store's token (or is still opening it). With several nodes the shared state can stay CONNECTED
 * while one node reports 0 here.
 */
export const customKeyStoreReachable = new client.Gauge({
  name: 'p11kms_custom_key_store_reachable',
  help: 'Whether this node has sessions to the token of each custom key store that should be connected (1) or cannot reach it (0).',
  labelNames: ['custom_key_store_id'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const s of keyStoreSummary()) {
      if (s.local.state !== 'DISCONNECTED') this.set({ custom_key_store_id: s.id }, s.local.state === 'CONNECTED' ? 1 : 0);
    }
  },
});

/** Points the scrape-time gauges at the running daemon's token, store and audit trail. */
export function bindMetrics(b: Bound): void {
  Object.assign(bound, b);
}
export function unbindMetrics(): void {
  bound.token = bound.store = bound.audit = bound.keyStores = bound.database = undefined;
}

new client.Gauge({
  name: 'p11kms_session_pool_sessions',
  help: 'Token session pool: open, in_use, idle sessions and the configured max.',
  labelNames: ['state'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const s = bound.token?.poolStats();
    if (!s) return;
    this.set({ state: 'open' }, s.size);
    this.set({ state: 'in_use' }, s.inUse);
    this.set({ state: 'idle' }, s.idle);
    this.set({ state: 'max' }, s.max);
  },
});

new client.Gauge({
  name: 'p11kms_session_pool_waiting',
  help: 'Callers waiting for a free token session.',
  registers: [registry],
  collect() {
    this.set(bound.token?.poolStats().waiting ?? 0);
  },
});

const TOKEN_STATES = ['ready', 'recovering', 'down', 'closed'] as const;
new client.Gauge({
  name: 'p11kms_token_state',
  help: 'Token connection state: 1 for the current state.',
  labelNames: ['token', 'state'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const t = bound.token;
    if (!t) return;
    for (const s of TOKEN_STATES) this.set({ token: t.label, state: s }, t.state === s ? 1 : 0);
  },
});

new client.Gauge({
  name: 'p11kms_token_recoveries',
  help: 'Successful token reconnects since start.',
  registers: [registry],
  collect() {
    this.set(bound.token?.recoveries ?? 0);
  },
});

new client.Gauge({
  name: 'p11kms_keys',
  help: 'KMS keys by key state.',
  labelNames: ['state'] as const,
  registers: [registry],
  collect() {
    this.reset();
    // Counting reads the database: not while it is away (p11kms_database_up says so).
    const counts = whileDatabaseUp(bound.database?.(), () => bound.store?.countKeysByState?.());
    if (!counts) return;
    for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
  },
});

new client.Gauge({
  name: 'p11kms_database_up',
  help: 'Metadata database as this node sees it: 1 available (SQLite always), 0 unavailable (readiness is 503).',
  labelNames: ['kind'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const db = bound.database?.();
    if (db) this.set({ kind: db.kind }, databaseAway(db) ? 0 : 1);
  },
});

new client.Gauge({
  name: 'p11kms_database_last_confirmed_seconds',
  help: 'Seconds since this node last confirmed its change feed from the shared database (PostgreSQL only: no sample with SQLite).',
  // A label, so that SQLite gets no sample at all (an unlabelled gauge always shows a value).
  labelNames: ['kind'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const db = bound.database?.();
    if (db?.kind === 'postgresql' && db.lastConfirmedMsAgo !== null) this.set({ kind: db.kind }, db.lastConfirmedMsAgo / 1000);
  },
});

new client.Gauge({
  name: 'p11kms_cluster_leader',
  help: '1 while this node holds the leader lock and runs the background jobs (PostgreSQL only; a single SQLite node always runs them).',
  registers: [registry],
  collect() {
    this.reset();
    const db = bound.database?.();
    if (db) this.set(db.kind === 'sqlite' || db.leader ? 1 : 0);
  },
});

new client.Gauge({
  name: 'p11kms_audit_healthy',
  help: '1 while the audit trail is being written, 0 while it is failing.',
  registers: [registry],
  collect() {
    const a = bound.audit?.();
    this.set(a ? (a.healthy ? 1 : 0) : 1);
  },
});

new client.Gauge({
  name: 'p11kms_audit_last_seq',
  help: 'Sequence number of the last audit record written.',
  registers: [registry],
  collect() {
    this.set(bound.audit?.().seq ?? 0);
  },
});

/** TokenOptions.observe: one histogram sample per token call. */
export function observeTokenCall(mechanism: string, operation: string, seconds: number, ok: boolean): void {
  tokenCallDuration.observe({ mechanism, operation, outcome: ok ? 'ok' : 'error' }, seconds);
}
