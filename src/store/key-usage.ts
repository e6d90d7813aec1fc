import type { SqlDriver } from './sql-driver.js';

/**
 * GetKeyLastUsage (issue #12): the last successful cryptographic operation per key, and the date
 * tracking began. Rows arrive in batches from the in-memory recorder (src/kms/key-usage.ts), never
 * one write per request; a row only moves forward in time, so nodes sharing a database keep the
 * newest use whatever order their flushes arrive in.
 */
export const KEY_USAGE_SCHEMA = `
CREATE TABLE IF NOT EXISTS key_last_usage (
  key_id TEXT PRIMARY KEY REFERENCES keys(key_id) ON DELETE CASCADE,
  operation TEXT NOT NULL,
  used_at INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  request_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS store_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`;

export interface KeyUsageRecord {
  keyId: string;
  /** One of AWS's KeyLastUsageTrackingOperation values. */
  operation: string;
  usedAt: number;
  /** The audit event id of the call (CloudTrailEventId). */
  eventId: string;
  /** The call's x-amzn-RequestId (KmsRequestId). */
  requestId: string;
}

export interface KeyUsageTable {
  get(keyId: string): KeyUsageRecord | undefined;
  all(): KeyUsageRecord[];
  /** Writes a batch in one transaction; rows for keys deleted meanwhile are dropped. */
  putMany(rows: Iterable<KeyUsageRecord>): void;
  /** When this store began tracking key use: set on first call to `now`, then fixed. */
  trackingStart(now: number): number;
}

interface Row { key_id: string; operation: string; used_at: number; event_id: string; request_id: string }
const toRecord = (r: Row): KeyUsageRecord => ({
  keyId: r.key_id, operation: r.operation, usedAt: r.used_at, eventId: r.event_id, requestId: r.request_id,
});

export class SqliteKeyUsageTable implements KeyUsageTable {
  private readonly stmt;
  private start: number | undefined;

  constructor(private readonly db: SqlDriver) {
    this.stmt = {
      get: db.prepare('SELECT * FROM key_last_usage WHERE key_id = ?'),
      all: db.prepare('SELECT * FROM key_last_usage ORDER BY key_id'),
      put: db.prepare(`INSERT INTO key_last_usage (key_id, operation, used_at, event_id, request_id)
        SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT) WHERE EXISTS (SELECT 1 FROM keys WHERE key_id = ?)
        ON CONFLICT(key_id) DO UPDATE SET operation = excluded.operation, used_at = excluded.used_at,
          event_id = excluded.event_id, request_id = excluded.request_id
        WHERE excluded.used_at >= key_last_usage.used_at`),
      // Common SQL (SQLite and PostgreSQL, src/store/sql-driver.ts): ON CONFLICT DO NOTHING, typed parameters.
      setStart: db.prepare("INSERT INTO store_meta (name, value) VALUES ('key_usage_tracking_start', ?) ON CONFLICT(name) DO NOTHING"),
      getStart: db.prepare("SELECT value FROM store_meta WHERE name = 'key_usage_tracking_start'").pluck(),
    };
  }

  get(keyId: string): KeyUsageRecord | undefined {
    const r = this.stmt.get.get(keyId) as Row | undefined;
    return r && toRecord(r);
  }

  all(): KeyUsageRecord[] {
    return (this.stmt.all.all() as Row[]).map(toRecord);
  }

  putMany(rows: Iterable<KeyUsageRecord>): void {
    this.db.transaction(() => {
      for (const r of rows) this.stmt.put.run(r.keyId, r.operation, r.usedAt, r.eventId, r.requestId, r.keyId);
    })();
  }

  trackingStart(now: number): number {
    if (this.start === undefined) {
      this.stmt.setStart.run(String(now));
      this.start = Number(this.stmt.getStart.get());
    }
    return this.start;
  }
}
