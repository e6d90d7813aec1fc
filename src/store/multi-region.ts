import type { SqlDriver } from './sql-driver.js';

/**
 * Multi-Region keys (issue 13): each copy of a Multi-Region key (primary or replica) has one row
 * in its own region's store, saying where the primary is and which regions hold replicas. The
 * copies keep the same view; src/kms/multi-region.ts writes it to every copy. A region's row is
 * removed with its key (ON DELETE CASCADE).
 */
export const MULTI_REGION_SCHEMA = `
CREATE TABLE IF NOT EXISTS multi_region_keys (
  key_id TEXT PRIMARY KEY REFERENCES keys(key_id) ON DELETE CASCADE,
  primary_region TEXT NOT NULL,
  replica_regions TEXT NOT NULL,
  pending_window_days INTEGER,
  wrappable INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pending_replicas (
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  region TEXT NOT NULL,
  creation TEXT NOT NULL,
  PRIMARY KEY (key_id, region)
);
`;

export interface MultiRegionRecord {
  keyId: string;
  primaryRegion: string;
  /** Regions of the replicas, in the order they were created. */
  replicaRegions: string[];
  /** A primary scheduled for deletion while it has replicas: its waiting period once the last replica is deleted. */
  pendingWindowDays?: number | undefined;
  /**
   * Whether the key's material was created wrappable (CKA_EXTRACTABLE with CKA_WRAP_WITH_TRUSTED),
   * so that it can move to a token of another region, wrapped by a trusted peer key only.
   */
  wrappable?: boolean | undefined;
}

export interface MultiRegionTable {
  get(keyId: string): MultiRegionRecord | undefined;
  put(r: MultiRegionRecord): void;
  /** Ids of the keys whose primary is in `region` (this store's region, for the keys it holds). */
  primariesIn(region: string): string[];
  /**
   * Replicas at a peer site that ReplicateKey asked for and the peer has not confirmed yet,
   * with their ReplicateKey parameters (JSON: policy, description, tags): retried until it does.
   */
  putPendingReplica(keyId: string, region: string, creation: string): void;
  pendingReplica(keyId: string, region: string): string | undefined;
  deletePendingReplica(keyId: string, region: string): void;
}

interface Row { key_id: string; primary_region: string; replica_regions: string; pending_window_days: number | null; wrappable: number }

export class SqliteMultiRegionTable implements MultiRegionTable {
  private readonly getStmt;
  private readonly putStmt;
  private readonly primariesStmt;
  private readonly pending;

  /** The schema is created with the store's (sqlite.ts; PostgreSQL: migration 3). */
  constructor(db: SqlDriver) {
    this.getStmt = db.prepare('SELECT * FROM multi_region_keys WHERE key_id = ?');
    this.pending = {
      put: db.prepare('INSERT INTO pending_replicas VALUES (?,?,?) ON CONFLICT(key_id, region) DO UPDATE SET creation = excluded.creation'),
      get: db.prepare('SELECT creation FROM pending_replicas WHERE key_id = ? AND region = ?').pluck(),
      delete: db.prepare('DELETE FROM pending_replicas WHERE key_id = ? AND region = ?'),
    };
    this.primariesStmt = db.prepare('SELECT key_id FROM multi_region_keys WHERE primary_region = ? AND replica_regions <> ? ORDER BY key_id').pluck();
    this.putStmt = db.prepare(`INSERT INTO multi_region_keys VALUES (?,?,?,?,?) ON CONFLICT(key_id) DO UPDATE SET
      primary_region = excluded.primary_region, replica_regions = excluded.replica_regions,
      pending_window_days = excluded.pending_window_days, wrappable = excluded.wrappable`);
  }

  get(keyId: string): MultiRegionRecord | undefined {
    const r = this.getStmt.get(keyId) as Row | undefined;
    return r && {
      keyId: r.key_id, primaryRegion: r.primary_region, replicaRegions: JSON.parse(r.replica_regions) as string[],
      pendingWindowDays: r.pending_window_days ?? undefined, wrappable: r.wrappable === 1,
    };
  }

  primariesIn(region: string): string[] {
    return this.primariesStmt.all(region, '[]') as string[];
  }

  putPendingReplica(keyId: string, region: string, creation: string): void {
    this.pending.put.run(keyId, region, creation);
  }

  pendingReplica(keyId: string, region: string): string | undefined {
    return this.pending.get.get(keyId, region) as string | undefined;
  }

  deletePendingReplica(keyId: string, region: string): void {
    this.pending.delete.run(keyId, region);
  }

  put(r: MultiRegionRecord): void {
    this.putStmt.run(r.keyId, r.primaryRegion, JSON.stringify(r.replicaRegions), r.pendingWindowDays ?? null, r.wrappable ? 1 : 0);
  }
}
