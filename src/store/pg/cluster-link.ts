import pg from 'pg';
import type { Logger } from '../../log.js';

/**
 * One node's asynchronous connection to the cluster's database, beside the store's synchronous
 * one. It carries what must not block the event loop and what dies with the node:
 *
 * - the change feed: LISTEN on the schema's channel (p11kms_changes in the default region's), plus a poll of p11kms_changes every pollMs for
 *   what a notification missed (a lost connection, a notification queue overflow). Each change
 *   is applied once (by sequence number); sequence numbers that were skipped (a transaction
 *   still open, or rolled back) are asked for again until holeWindowMs has passed.
 * - `fresh`: whether the feed has been confirmed within staleMs. While it is not, the store
 *   reads the database instead of its caches (and answers 503 if the database is away).
 * - advisory locks that PostgreSQL releases when this connection ends (kill -9 included): the
 *   instance lock (marks this instance's pending rows as work in progress), the leader lock
 *   (background jobs) and per-key locks (lifecycle changes that await the token).
 *
 * A further region's link (its store in its own schema, store.ts) names its key locks with the
 * schema (`lockScope`), and follows the default region's leadership (`followLeader`) instead of
 * taking the leader lock: one leader per node runs every region's jobs.
 */

const NS_KEY = 0x70316b01;
const NS_LEADER = 0x70316b02;
const NS_INSTANCE = 0x70316b03;

export interface Change {
  seq: number;
  entity: string;
  ref: string;
}

export interface ClusterLinkOptions {
  url: string;
  instanceId: string;
  pollMs: number;
  staleMs: number;
  connectTimeoutMs: number;
  /** The notification channel of this schema's change notes (migrations.ts, storeSchema). */
  channel: string;
  /** Prefixes key lock names ('' for the default region's schema, whose lock names are the key ids as before). */
  lockScope: string;
  /** Whether the store this one follows leads; undefined: this link takes the leader lock itself. */
  followLeader?: (() => boolean) | undefined;
  log: Logger;
  onChange(change: Change): void;
  /** Changes may have been missed (reconnected, or the feed was stale): drop every cache. */
  onGap(): void;
}

const HOLE_WINDOW_MS = 30_000;
const TRIM_EVERY_MS = 60_000;

export class ClusterLink {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private maxSeen = 0;
  private readonly holes = new Map<number, number>();
  private lastConfirmed = 0;
  private wasFresh = false;
  private leader = false;
  private lastTrim = 0;
  private readonly heldKeys = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private closed = false;
  /** Set once the first poll established where the feed starts. */
  private started = false;

  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: ClusterLinkOptions) {}

  /** One query at a time on the link (node-postgres 9 drops its own queue). */
  private query(c: pg.Client, text: string, values?: unknown[]): Promise<pg.QueryResult> {
    const run = this.tail.then(() => c.query(text, values));
    this.tail = run.catch(() => undefined);
    return run;
  }

  async start(): Promise<void> {
    await this.connection();
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.opts.pollMs);
    this.timer.unref();
  }

  /** The caches may be trusted: the feed was confirmed within staleMs. */
  get fresh(): boolean {
    return this.client !== undefined && Date.now() - this.lastConfirmed < this.opts.staleMs;
  }

  /** When the feed was last confirmed (Date.now() ms; 0: never), for readiness. */
  get confirmedAt(): number {
    return this.lastConfirmed;
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  get isLeader(): boolean {
    const leads = this.opts.followLeader ? this.opts.followLeader() : this.leader;
    return leads && this.client !== undefined;
  }

  private connection(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const c = new pg.Client({
        connectionString: this.opts.url, connectionTimeoutMillis: this.opts.connectTimeoutMs, keepAlive: true,
        application_name: `p11kms-link ${this.opts.instanceId}`, query_timeout: this.opts.staleMs * 3,
      });
      const lost = (why: string) => {
        if (this.client !== c) return;
        this.client = undefined;
        if (this.leader && !this.opts.followLeader) this.opts.log.warn('lost the database connection: no longer the leader');
        this.leader = false;
        this.heldKeys.clear();
        this.opts.log.warn({ why }, 'cluster link to the database lost; reconnecting');
      };
      c.on('error', (e) => lost(e.message));
      c.on('end', () => lost('ended'));
      c.on('notification', (n) => {
        if (n.channel === this.opts.channel && n.payload) this.noteNotification(n.payload);
      });
      try {
        await c.connect();
        await c.query(`LISTEN "${this.opts.channel}"`);
        const got = await c.query('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [NS_INSTANCE, this.opts.instanceId]);
        if (!got.rows[0]?.ok) throw new Error('another connection holds this instance id');
      } catch (e) {
        c.end().catch(() => undefined);
        throw e;
      }
      this.client = c;
      // Whatever happened while disconnected is unknown to the caches.
      if (this.started) this.opts.onGap();
      return c;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private noteNotification(payload: string): void {
    const [seq, entity, ...ref] = payload.split(' ');
    this.apply({ seq: Number(seq), entity: entity ?? '', ref: ref.join(' ') });
  }

  private apply(c: Change): void {
    if (c.seq <= this.maxSeen && !this.holes.has(c.seq)) return;
    this.holes.delete(c.seq);
    if (c.seq > this.maxSeen) {
      const now = Date.now();
      for (let s = this.maxSeen + 1; s < c.seq && this.started; s++) this.holes.set(s, now);
      this.maxSeen = c.seq;
    }
    this.opts.onChange(c);
  }

  /** Reads the changes after the newest seen (and the holes), confirming the feed. */
  async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      const c = await this.connection();
      if (!this.started) {
        const r = await this.query(c, 'SELECT coalesce(max(seq), 0)::bigint AS s FROM p11kms_changes');
        this.maxSeen = Number(r.rows[0]?.s ?? 0);
        this.started = true;
      } else {
        const now = Date.now();
        for (const [s, since] of this.holes) if (now - since > HOLE_WINDOW_MS) this.holes.delete(s);
        const r = await this.query(
          c,
          'SELECT seq::bigint AS seq, entity, ref FROM p11kms_changes WHERE seq > $1 OR seq = ANY($2::bigint[]) ORDER BY seq',
          [this.maxSeen, [...this.holes.keys()]],
        );
        for (const row of r.rows as { seq: string; entity: string; ref: string }[]) {
          this.apply({ seq: Number(row.seq), entity: row.entity, ref: row.ref });
        }
      }
      this.lastConfirmed = Date.now();
      if (!this.wasFresh) this.opts.onGap();
      this.wasFresh = true;
    } catch (e) {
      if (this.wasFresh) this.opts.log.warn({ err: (e as Error).message }, 'change feed poll failed');
      this.wasFresh = false;
    } finally {
      this.polling = false;
    }
  }

  /** Tries to become (or stay) the leader; true while this node holds the leader lock. */
  async tryLead(): Promise<boolean> {
    if (this.closed) return false;
    try {
      const c = await this.connection();
      if (this.opts.followLeader) {
        this.leader = this.opts.followLeader();
      } else if (!this.leader) {
        const r = await this.query(c, 'SELECT pg_try_advisory_lock($1, 0) AS ok', [NS_LEADER]);
        this.leader = r.rows[0]?.ok === true;
        if (this.leader) this.opts.log.info({ instance: this.opts.instanceId }, 'this node is now the leader (background jobs run here)');
      }
      if (this.leader && Date.now() - this.lastTrim > TRIM_EVERY_MS) {
        this.lastTrim = Date.now();
        // The change log (this schema's) only serves the poll and its 30 s hole window: an hour is plenty.
        await this.query(c, "DELETE FROM p11kms_changes WHERE at < now() - interval '1 hour'");
      }
    } catch {
      // A failed query is not a lost lock; a lost connection is (see `lost` above).
    }
    return this.isLeader;
  }

  /** Takes the cluster-wide lock of one key, waiting (without blocking the event loop) while another node holds it. */
  async lockKey(keyId: string, timeoutMs = 30_000): Promise<() => Promise<void>> {
    const deadline = Date.now() + timeoutMs;
    const name = this.opts.lockScope + keyId;
    for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
      const c = await this.connection();
      const r = await this.query(c, 'SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [NS_KEY, name]);
      if (r.rows[0]?.ok === true) {
        this.heldKeys.add(keyId);
        return async () => {
          if (this.client !== c || !this.heldKeys.delete(keyId)) return; // lost with the connection
          await this.query(c, 'SELECT pg_advisory_unlock($1, hashtext($2))', [NS_KEY, name]).catch(() => undefined);
        };
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for the cluster lock of key ${keyId}`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const c = this.client;
    this.client = undefined;
    this.leader = false;
    await c?.end().catch(() => undefined);
  }
}
