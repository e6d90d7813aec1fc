import type { SqlDriver } from './sql-driver.js';

/**
 * Metadata of the key lifecycle (rotation, scheduled deletion, imported key material). Kept in
 * side tables keyed by key id, so the `keys` and `key_materials` tables keep their shape. Every
 * table that hangs off a key references keys(key_id) ON DELETE CASCADE: deleting the key row
 * removes them. Nothing here is key material: a check value is a one-way digest computed in
 * the token (see src/hsm/verbs/wrap.ts, unwrapAesKey).
 */
export const LIFECYCLE_SCHEMA = `
CREATE TABLE IF NOT EXISTS key_rotation (
  key_id TEXT PRIMARY KEY REFERENCES keys(key_id) ON DELETE CASCADE,
  enabled INTEGER NOT NULL,
  period_days INTEGER NOT NULL,
  anchor_at INTEGER NOT NULL,
  next_rotation_at INTEGER
);
CREATE INDEX IF NOT EXISTS key_rotation_due ON key_rotation(next_rotation_at) WHERE enabled = 1;
CREATE TABLE IF NOT EXISTS key_material_info (
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  version INTEGER NOT NULL,
  material_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  rotation_type TEXT CHECK (rotation_type IN ('AUTOMATIC','ON_DEMAND')),
  rotated_at INTEGER,
  imported INTEGER NOT NULL DEFAULT 0,
  import_state TEXT CHECK (import_state IN ('IMPORTED','PENDING_IMPORT')),
  pending_rotation INTEGER NOT NULL DEFAULT 0,
  expiration_model TEXT CHECK (expiration_model IN ('KEY_MATERIAL_EXPIRES','KEY_MATERIAL_DOES_NOT_EXPIRE')),
  valid_to INTEGER,
  description TEXT,
  PRIMARY KEY (key_id, version)
);
CREATE INDEX IF NOT EXISTS key_material_expiry ON key_material_info(valid_to) WHERE import_state = 'IMPORTED';
CREATE TABLE IF NOT EXISTS import_tokens (
  token_id BLOB PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  wrapping_algorithm TEXT NOT NULL,
  wrapping_key_spec TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS import_tokens_by_key ON import_tokens(key_id, created_at);
CREATE INDEX IF NOT EXISTS import_tokens_expiry ON import_tokens(expires_at);
CREATE TABLE IF NOT EXISTS key_deletions (
  key_id TEXT PRIMARY KEY,
  arn TEXT NOT NULL,
  account_id TEXT NOT NULL,
  origin TEXT NOT NULL,
  scheduled_for INTEGER NOT NULL,
  deleted_at INTEGER NOT NULL,
  objects_destroyed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_pending_deletion ON keys(deletion_date) WHERE state = 'PendingDeletion';
`;

export interface RotationSettings {
  keyId: string;
  enabled: boolean;
  periodDays: number;
  /** When the current automatic schedule started: the enable date or the last automatic rotation. */
  anchorAt: number;
  /** anchorAt + period; undefined while automatic rotation is disabled. */
  nextRotationAt?: number | undefined;
}

export type RotationType = 'AUTOMATIC' | 'ON_DEMAND';
export type ExpirationModel = 'KEY_MATERIAL_EXPIRES' | 'KEY_MATERIAL_DOES_NOT_EXPIRE';

/**
 * What the lifecycle knows about one key-material version. Generated versions have a row only
 * when they came from a rotation; imported versions always have one, and keep it after their
 * material was deleted or expired (import_state PENDING_IMPORT), so that re-importing the same
 * material is recognised by its KeyMaterialId.
 */
export interface MaterialInfo {
  keyId: string;
  version: number;
  materialId: string;
  createdAt: number;
  rotationType?: RotationType | undefined;
  rotatedAt?: number | undefined;
  imported: boolean;
  importState?: 'IMPORTED' | 'PENDING_IMPORT' | undefined;
  /** Imported as NEW_KEY_MATERIAL and not yet made current by RotateKeyOnDemand. */
  pendingRotation: boolean;
  expirationModel?: ExpirationModel | undefined;
  validTo?: number | undefined;
  description?: string | undefined;
}

export interface ImportTokenRecord {
  /** 16 random bytes; also the CKA_ID of the wrapping private key in the token. */
  tokenId: Buffer;
  keyId: string;
  wrappingAlgorithm: string;
  wrappingKeySpec: string;
  createdAt: number;
  expiresAt: number;
}

export interface KeyDeletionRecord {
  keyId: string;
  arn: string;
  accountId: string;
  origin: string;
  scheduledFor: number;
  deletedAt: number;
  objectsDestroyed: number;
}

export interface LifecycleStore {
  getRotation(keyId: string): RotationSettings | undefined;
  putRotation(r: RotationSettings): void;
  /** Enabled keys whose automatic rotation is due, oldest first. */
  dueRotations(now: number, limit: number): RotationSettings[];

  getMaterialInfo(keyId: string, version: number): MaterialInfo | undefined;
  listMaterialInfo(keyId: string): MaterialInfo[];
  putMaterialInfo(info: MaterialInfo): void;
  deleteMaterialInfo(keyId: string, version: number): void;
  countRotations(keyId: string, type: RotationType): number;
  /** Imported material that is present and whose ValidTo has passed. */
  expiredMaterials(now: number, limit: number): MaterialInfo[];

  insertImportToken(t: ImportTokenRecord): void;
  getImportToken(tokenId: Buffer): ImportTokenRecord | undefined;
  listImportTokens(keyId: string): ImportTokenRecord[];
  expiredImportTokens(now: number, limit: number): ImportTokenRecord[];
  allImportTokenIds(): Set<string>;
  deleteImportToken(tokenId: Buffer): void;

  /** Keys pending deletion whose deletion date has passed. */
  dueDeletions(now: number, limit: number): string[];
  recordDeletion(d: KeyDeletionRecord): void;
  getDeletion(keyId: string): KeyDeletionRecord | undefined;
}

interface RotationRow { key_id: string; enabled: number; period_days: number; anchor_at: number; next_rotation_at: number | null }
interface InfoRow {
  key_id: string; version: number; material_id: string; created_at: number; rotation_type: string | null;
  rotated_at: number | null; imported: number; import_state: string | null; pending_rotation: number;
  expiration_model: string | null; valid_to: number | null; description: string | null;
}
interface TokenRow {
  token_id: Buffer; key_id: string; wrapping_algorithm: string; wrapping_key_spec: string; created_at: number; expires_at: number;
}
interface DeletionRow {
  key_id: string; arn: string; account_id: string; origin: string; scheduled_for: number; deleted_at: number; objects_destroyed: number;
}

const toRotation = (r: RotationRow): RotationSettings => ({
  keyId: r.key_id, enabled: r.enabled === 1, periodDays: r.period_days, anchorAt: r.anchor_at,
  nextRotationAt: r.next_rotation_at ?? undefined,
});
const toInfo = (r: InfoRow): MaterialInfo => ({
  keyId: r.key_id, version: r.version, materialId: r.material_id, createdAt: r.created_at,
  rotationType: (r.rotation_type as RotationType | null) ?? undefined, rotatedAt: r.rotated_at ?? undefined,
  imported: r.imported === 1, importState: (r.import_state as MaterialInfo['importState'] | null) ?? undefined,
  pendingRotation: r.pending_rotation === 1,
  expirationModel: (r.expiration_model as ExpirationModel | null) ?? undefined, validTo: r.valid_to ?? undefined,
  description: r.description ?? undefined,
});
const toToken = (r: TokenRow): ImportTokenRecord => ({
  tokenId: r.token_id, keyId: r.key_id, wrappingAlgorithm: r.wrapping_algorithm, wrappingKeySpec: r.wrapping_key_spec,
  createdAt: r.created_at, expiresAt: r.expires_at,
});

/** SQLite implementation, sharing the metadata store's connection (and so its transactions). */
export class SqliteLifecycleStore implements LifecycleStore {
  private readonly stmt;

  constructor(db: SqlDriver) {
    this.stmt = {
      getRotation: db.prepare('SELECT * FROM key_rotation WHERE key_id = ?'),
      putRotation: db.prepare(`INSERT INTO key_rotation VALUES (@key_id,@enabled,@period_days,@anchor_at,@next_rotation_at)
        ON CONFLICT(key_id) DO UPDATE SET enabled = excluded.enabled, period_days = excluded.period_days,
        anchor_at = excluded.anchor_at, next_rotation_at = excluded.next_rotation_at`),
      dueRotations: db.prepare(`SELECT r.* FROM key_rotation r JOIN keys k ON k.key_id = r.key_id
        WHERE r.enabled = 1 AND r.next_rotation_at <= ? AND k.state = 'Enabled' ORDER BY r.next_rotation_at LIMIT ?`),
      getInfo: db.prepare('SELECT * FROM key_material_info WHERE key_id = ? AND version = ?'),
      listInfo: db.prepare('SELECT * FROM key_material_info WHERE key_id = ? ORDER BY version'),
      putInfo: db.prepare(`INSERT INTO key_material_info VALUES (@key_id,@version,@material_id,@created_at,@rotation_type,
        @rotated_at,@imported,@import_state,@pending_rotation,@expiration_model,@valid_to,@description)
        ON CONFLICT(key_id, version) DO UPDATE SET material_id = excluded.material_id, rotation_type = excluded.rotation_type,
        rotated_at = excluded.rotated_at, imported = excluded.imported, import_state = excluded.import_state,
        pending_rotation = excluded.pending_rotation, expiration_model = excluded.expiration_model,
        valid_to = excluded.valid_to, description = excluded.description`),
      deleteInfo: db.prepare('DELETE FROM key_material_info WHERE key_id = ? AND version = ?'),
      countRotations: db.prepare('SELECT COUNT(*) FROM key_material_info WHERE key_id = ? AND rotation_type = ?').pluck(),
      expiredMaterials: db.prepare(`SELECT * FROM key_material_info WHERE import_state = 'IMPORTED' AND valid_to <= ?
        ORDER BY valid_to LIMIT ?`),
      insertToken: db.prepare('INSERT INTO import_tokens VALUES (?,?,?,?,?,?)'),
      getToken: db.prepare('SELECT * FROM import_tokens WHERE token_id = ?'),
      listTokens: db.prepare('SELECT * FROM import_tokens WHERE key_id = ? ORDER BY created_at'),
      expiredTokens: db.prepare('SELECT * FROM import_tokens WHERE expires_at <= ? ORDER BY expires_at LIMIT ?'),
      allTokenIds: db.prepare('SELECT token_id FROM import_tokens').pluck(),
      deleteToken: db.prepare('DELETE FROM import_tokens WHERE token_id = ?'),
      dueDeletions: db.prepare(`SELECT key_id FROM keys WHERE state = 'PendingDeletion' AND deletion_date <= ?
        ORDER BY deletion_date LIMIT ?`).pluck(),
      recordDeletion: db.prepare(`INSERT INTO key_deletions VALUES (?,?,?,?,?,?,?) ON CONFLICT(key_id) DO UPDATE SET
        arn = excluded.arn, account_id = excluded.account_id, origin = excluded.origin, scheduled_for = excluded.scheduled_for,
        deleted_at = excluded.deleted_at, objects_destroyed = excluded.objects_destroyed`),
      getDeletion: db.prepare('SELECT * FROM key_deletions WHERE key_id = ?'),
    };
  }

  getRotation(keyId: string): RotationSettings | undefined {
    const row = this.stmt.getRotation.get(keyId) as RotationRow | undefined;
    return row && toRotation(row);
  }

  putRotation(r: RotationSettings): void {
    this.stmt.putRotation.run({
      key_id: r.keyId, enabled: r.enabled ? 1 : 0, period_days: r.periodDays, anchor_at: r.anchorAt,
      next_rotation_at: r.nextRotationAt ?? null,
    });
  }

  dueRotations(now: number, limit: number): RotationSettings[] {
    return (this.stmt.dueRotations.all(now, limit) as RotationRow[]).map(toRotation);
  }

  getMaterialInfo(keyId: string, version: number): MaterialInfo | undefined {
    const row = this.stmt.getInfo.get(keyId, version) as InfoRow | undefined;
    return row && toInfo(row);
  }

  listMaterialInfo(keyId: string): MaterialInfo[] {
    return (this.stmt.listInfo.all(keyId) as InfoRow[]).map(toInfo);
  }

  putMaterialInfo(i: MaterialInfo): void {
    this.stmt.putInfo.run({
      key_id: i.keyId, version: i.version, material_id: i.materialId, created_at: i.createdAt,
      rotation_type: i.rotationType ?? null, rotated_at: i.rotatedAt ?? null, imported: i.imported ? 1 : 0,
      import_state: i.importState ?? null, pending_rotation: i.pendingRotation ? 1 : 0,
      expiration_model: i.expirationModel ?? null, valid_to: i.validTo ?? null, description: i.description ?? null,
    });
  }

  deleteMaterialInfo(keyId: string, version: number): void {
    this.stmt.deleteInfo.run(keyId, version);
  }

  countRotations(keyId: string, type: RotationType): number {
    return this.stmt.countRotations.get(keyId, type) as number;
  }

  expiredMaterials(now: number, limit: number): MaterialInfo[] {
    return (this.stmt.expiredMaterials.all(now, limit) as InfoRow[]).map(toInfo);
  }

  insertImportToken(t: ImportTokenRecord): void {
    this.stmt.insertToken.run(t.tokenId, t.keyId, t.wrappingAlgorithm, t.wrappingKeySpec, t.createdAt, t.expiresAt);
  }

  getImportToken(tokenId: Buffer): ImportTokenRecord | undefined {
    const row = this.stmt.getToken.get(tokenId) as TokenRow | undefined;
    return row && toToken(row);
  }

  listImportTokens(keyId: string): ImportTokenRecord[] {
    return (this.stmt.listTokens.all(keyId) as TokenRow[]).map(toToken);
  }

  expiredImportTokens(now: number, limit: number): ImportTokenRecord[] {
    return (this.stmt.expiredTokens.all(now, limit) as TokenRow[]).map(toToken);
  }

  allImportTokenIds(): Set<string> {
    return new Set((this.stmt.allTokenIds.all() as Buffer[]).map((b) => b.toString('hex')));
  }

  deleteImportToken(tokenId: Buffer): void {
    this.stmt.deleteToken.run(tokenId);
  }

  dueDeletions(now: number, limit: number): string[] {
    return this.stmt.dueDeletions.all(now, limit) as string[];
  }

  recordDeletion(d: KeyDeletionRecord): void {
    this.stmt.recordDeletion.run(d.keyId, d.arn, d.accountId, d.origin, d.scheduledFor, d.deletedAt, d.objectsDestroyed);
  }

  getDeletion(keyId: string): KeyDeletionRecord | undefined {
    const r = this.stmt.getDeletion.get(keyId) as DeletionRow | undefined;
    return r && {
      keyId: r.key_id, arn: r.arn, accountId: r.account_id, origin: r.origin, scheduledFor: r.scheduled_for,
      deletedAt: r.deleted_at, objectsDestroyed: r.objects_destroyed,
    };
  }
}
