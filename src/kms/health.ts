import type { AuditStatus } from '../audit/types.js';
import type { Token } from '../hsm/token.js';
import type { DatabaseHealth } from '../model/database-health.js';
import type { MetadataStore } from '../store/types.js';
import type { KeyStoreConnections } from './key-store-connections.js';

/** What readiness needs of the audit trail (src/audit/trail.ts). */
export interface AuditProbe {
  readonly failClosed: boolean;
  status(): AuditStatus;
  ready(): Promise<boolean>;
}

/**
 * The readiness report of the daemon: the default token's state, the metadata database's (a
 * shared PostgreSQL store), the audit trail's, and the custom key stores' connection states
 * (the shared one, and this node's own sessions as `local`).
 */
export interface Readiness {
  ready: boolean;
  token: { label: string; state: Token['state']; recoveries: Token['recoveries']; sessions: ReturnType<Token['poolStats']> };
  customKeyStores: ReturnType<KeyStoreConnections['summary']> | undefined;
  database: DatabaseHealth;
  audit: { enabled: boolean; failClosed: boolean; state: 'ok' | 'failing' };
}

export interface ReadinessSources {
  store: MetadataStore;
  audit?: AuditProbe | undefined;
}

/** How the node sees its metadata database: SQLite is in the process; a shared store says (src/store/pg). */
export function databaseHealth(store: MetadataStore): DatabaseHealth {
  return store.shared?.health() ?? { kind: 'sqlite' };
}

/** A shared database this node sees as unavailable: what would read it waits for it and fails. */
export function databaseAway(db: DatabaseHealth | undefined): boolean {
  return db?.kind === 'postgresql' && db.state !== 'ok';
}

/**
 * A read of the metadata database for a report (readiness, a metrics scrape): skipped while a
 * shared database is away (it would wait for it, then fail the whole report), and undefined if
 * it fails meanwhile.
 */
export function whileDatabaseUp<T>(db: DatabaseHealth | undefined, read: () => T): T | undefined {
  if (databaseAway(db)) return undefined;
  try {
    return read();
  } catch {
    return undefined;
  }
}

/**
 * Readiness as the core sees it, for the health endpoint (src/api/health.ts), which asks here
 * rather than calling the token or the store. Not ready while any of these holds, since the node
 * would answer 5xx to every request: the default token does not answer; a shared database is
 * unavailable; a fail-closed audit trail cannot be written. Custom key stores are listed with
 * their connection state but affect only their own keys.
 */
export function readiness(token: Token, keyStores: KeyStoreConnections | undefined, sources: ReadinessSources): Readiness {
  const database = databaseHealth(sources.store);
  const trail = sources.audit?.status();
  const auditFailing = trail !== undefined && !trail.healthy;
  // A failed trail retries only when asked (at most once a second); a node that a load balancer
  // took out gets no requests, so the readiness check asks, and a later check sees it recovered.
  if (auditFailing) void sources.audit?.ready();
  const failClosed = sources.audit?.failClosed ?? false;
  return {
    ready: token.isHealthy() && !databaseAway(database) && !(failClosed && auditFailing),
    token: { label: token.label, state: token.state, recoveries: token.recoveries, sessions: token.poolStats() },
    // The custom key stores are rows of the metadata database.
    customKeyStores: whileDatabaseUp(database, () => keyStores?.summary()),
    database,
    audit: { enabled: trail !== undefined, failClosed, state: auditFailing ? 'failing' : 'ok' },
  };
}
