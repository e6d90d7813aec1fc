/**
 * How one node sees its metadata database, for readiness (/health/ready, `p11kms status`) and
 * metrics. Plain data: it never holds the database URL or a password.
 *
 * SQLite is a file inside the process: it does not decide readiness. A shared PostgreSQL store
 * is 'unavailable' while its change feed has not been confirmed within the staleness bound
 * (the caches cannot be trusted and reads go to a database that does not answer), or while its
 * most recent statements failed for want of the database; it turns 'ok' again by itself.
 */
export type DatabaseHealth = SqliteHealth | PostgresHealth;

export interface SqliteHealth {
  kind: 'sqlite';
}

export interface PostgresHealth {
  kind: 'postgresql';
  state: 'ok' | 'unavailable';
  /** Why it is unavailable, in words (no URL, no credentials). */
  reason?: string | undefined;
  /** Milliseconds since the change feed was last confirmed; null before the first confirmation. */
  lastConfirmedMsAgo: number | null;
  /** Milliseconds since a statement last failed because the database was unreachable or timed out; null if none has. */
  lastFailureMsAgo: number | null;
  /** The schema version this node found or migrated to at start-up. */
  schemaVersion: number;
  /** This node's name (P11KMS_NODE_ID) and this process's instance id. */
  nodeId: string;
  instanceId: string;
  /** Whether this node holds the leader lock (background jobs run here). */
  leader: boolean;
}
