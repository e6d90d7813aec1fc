import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { Errors } from '../errors.js';
import { LIFECYCLE_SCHEMA, SqliteLifecycleStore, type LifecycleStore } from './lifecycle.js';
import {
  KEY_STORES_CONNECTION_BACKFILL, KEY_STORES_CONNECTION_COLUMNS, KEY_STORES_SCHEMA, SqliteKeyStoreTable, type KeyStoreTable,
} from './key-stores.js';
import { KEY_USAGE_SCHEMA, SqliteKeyUsageTable, type KeyUsageTable } from './key-usage.js';
import { MULTI_REGION_SCHEMA, SqliteMultiRegionTable, type MultiRegionTable } from './multi-region.js';
import type { CredentialRecord, GrantFilter, GrantRecord, IdentityPolicyRecord } from './authz-records.js';
import type { SqlDriver } from './sql-driver.js';
import type {
  AliasRecord, KeyMaterialRecord, KeyPatch, KeyRecord, MetadataStore, Page, Tag,
} from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  key_id TEXT PRIMARY KEY,
  arn TEXT NOT NULL,
  account_id TEXT NOT NULL,
  region TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  description TEXT NOT NULL,
  key_usage TEXT NOT NULL,
  key_spec TEXT NOT NULL,
  origin TEXT NOT NULL,
  key_manager TEXT NOT NULL,
  state TEXT NOT NULL,
  policy TEXT NOT NULL,
  current_version INTEGER NOT NULL,
  deletion_date INTEGER,
  custom_key_store_id TEXT
);
CREATE INDEX IF NOT EXISTS keys_by_account ON keys(account_id, key_id);
CREATE TABLE IF NOT EXISTS key_materials (
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  version INTEGER NOT NULL,
  material_id TEXT NOT NULL,
  object_id BLOB NOT NULL UNIQUE,
  state TEXT NOT NULL CHECK (state IN ('pending','active')),
  created_at INTEGER NOT NULL,
  PRIMARY KEY (key_id, version)
);
CREATE TABLE IF NOT EXISTS aliases (
  account_id TEXT NOT NULL,
  alias_name TEXT NOT NULL,
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, alias_name)
);
CREATE INDEX IF NOT EXISTS aliases_by_key ON aliases(key_id);
CREATE TABLE IF NOT EXISTS tags (
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  tag_key TEXT NOT NULL,
  tag_value TEXT NOT NULL,
  PRIMARY KEY (key_id, tag_key)
);
CREATE TABLE IF NOT EXISTS credentials (
  access_key_id TEXT PRIMARY KEY,
  principal_arn TEXT NOT NULL,
  sealed_secret BLOB NOT NULL,
  enabled INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_policies (
  principal_arn TEXT NOT NULL,
  policy_name TEXT NOT NULL,
  document TEXT NOT NULL,
  PRIMARY KEY (principal_arn, policy_name)
);
CREATE TABLE IF NOT EXISTS grants (
  grant_id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  name TEXT,
  grantee_principal TEXT NOT NULL,
  retiring_principal TEXT,
  operations TEXT NOT NULL,
  constraints TEXT,
  issuing_account TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  token TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_by_key ON grants(key_id, grant_id);
CREATE INDEX IF NOT EXISTS grants_by_retiring ON grants(retiring_principal, grant_id);
`;

export interface KeyRow {
  key_id: string; arn: string; account_id: string; region: string; created_at: number;
  description: string; key_usage: string; key_spec: string; origin: string; key_manager: string;
  state: string; policy: string; current_version: number; deletion_date: number | null; custom_key_store_id: string | null;
}
interface MaterialRow {
  key_id: string; version: number; material_id: string; object_id: Buffer; state: string; created_at: number;
}
export interface AliasRow { account_id: string; alias_name: string; key_id: string; created_at: number; updated_at: number }

export const toKey = (r: KeyRow): KeyRecord => ({
  keyId: r.key_id, arn: r.arn, accountId: r.account_id, region: r.region, createdAt: r.created_at,
  description: r.description, keyUsage: r.key_usage, keySpec: r.key_spec, origin: r.origin,
  keyManager: r.key_manager as KeyRecord['keyManager'], state: r.state as KeyRecord['state'],
  policy: r.policy, currentVersion: r.current_version, deletionDate: r.deletion_date ?? undefined,
  customKeyStoreId: r.custom_key_store_id ?? undefined,
});
const keyRow = (key: KeyRecord) => ({
  key_id: key.keyId, arn: key.arn, account_id: key.accountId, region: key.region, created_at: key.createdAt,
  description: key.description, key_usage: key.keyUsage, key_spec: key.keySpec, origin: key.origin,
  key_manager: key.keyManager, state: key.state, policy: key.policy, current_version: key.currentVersion,
  deletion_date: key.deletionDate ?? null, custom_key_store_id: key.customKeyStoreId ?? null,
});
const toMaterial = (r: MaterialRow): KeyMaterialRecord => ({
  keyId: r.key_id, version: r.version, materialId: r.material_id, objectId: r.object_id,
  state: r.state as KeyMaterialRecord['state'], createdAt: r.created_at,
});
export const toAlias = (r: AliasRow): AliasRecord => ({
  accountId: r.account_id, aliasName: r.alias_name, keyId: r.key_id, createdAt: r.created_at, updatedAt: r.updated_at,
});

/** Opens the SQLite file: WAL, synchronous commits, exclusive lock, schema created or brought up to date. */
function openSqlite(path: string): SqlDriver {
  ownerOnly(path);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('locking_mode = EXCLUSIVE');
  db.exec(SCHEMA);
  // SQLite gives -wal and -shm the database file's mode; files left by an older version are mended too.
  for (const f of [`${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  // Databases made before custom key stores (issue #6) lack the column; CREATE TABLE IF NOT EXISTS keeps them as they are.
  const keyColumns = (db.pragma('table_info(keys)') as { name: string }[]).map((c) => c.name);
  if (!keyColumns.includes('custom_key_store_id')) db.exec('ALTER TABLE keys ADD COLUMN custom_key_store_id TEXT');
  db.exec('CREATE INDEX IF NOT EXISTS keys_by_key_store ON keys(custom_key_store_id) WHERE custom_key_store_id IS NOT NULL');
  db.exec(LIFECYCLE_SCHEMA);
  db.exec(KEY_STORES_SCHEMA);
  // Stores made before the connection state was kept in the row: add the columns, CONNECTED where the operator left it connected.
  const storeColumns = (db.pragma('table_info(custom_key_stores)') as { name: string }[]).map((c) => c.name);
  if (!storeColumns.includes('connection_state')) {
    db.transaction(() => {
      for (const [name, type] of KEY_STORES_CONNECTION_COLUMNS) db.exec(`ALTER TABLE custom_key_stores ADD COLUMN ${name} ${type}`);
      db.exec(KEY_STORES_CONNECTION_BACKFILL);
    })();
  }
  db.exec(KEY_USAGE_SCHEMA);
  db.exec(MULTI_REGION_SCHEMA);
  return db as unknown as SqlDriver;
}

/** Page markers are the last item's sort key, base64url-encoded so callers treat them as opaque. */
const encodeMarker = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');
function decodeMarker(marker: string | undefined): string | undefined {
  if (marker === undefined) return undefined;
  const s = Buffer.from(marker, 'base64url').toString('utf8');
  if (encodeMarker(s) !== marker) throw Errors.invalidMarker('The request contains an invalid marker.');
  return s;
}

const KEY_COLUMNS: Record<keyof KeyPatch, string> = {
  description: 'description', state: 'state', policy: 'policy', currentVersion: 'current_version', deletionDate: 'deletion_date',
};

/**
 * SQLite metadata store: WAL, synchronous commits, and an exclusive lock so one daemon owns
 * the file. Being the only writer lets us cache key and version rows in memory, write-through.
 */
export class SqliteStore implements MetadataStore {
  protected readonly db: SqlDriver;
  protected readonly keyCache = new Map<string, KeyRecord>();
  protected readonly materialCache = new Map<string, KeyMaterialRecord>();
  private readonly stmt;
  readonly lifecycle: LifecycleStore;
  readonly keyStores: KeyStoreTable;
  readonly keyUsage: KeyUsageTable;
  readonly multiRegion: MultiRegionTable;

  /** A file path opens SQLite; a driver (src/store/pg) runs the same statements on another engine. */
  constructor(source: string | SqlDriver) {
    this.db = typeof source === 'string' ? openSqlite(source) : source;
    const d = this.db;
    this.stmt = {
      insertKey: d.prepare(`INSERT INTO keys (key_id, arn, account_id, region, created_at, description, key_usage, key_spec,
        origin, key_manager, state, policy, current_version, deletion_date, custom_key_store_id)
        VALUES (@key_id,@arn,@account_id,@region,@created_at,@description,@key_usage,
        @key_spec,@origin,@key_manager,@state,@policy,@current_version,@deletion_date,@custom_key_store_id)`),
      getKey: d.prepare('SELECT * FROM keys WHERE key_id = ?'),
      listKeys: d.prepare('SELECT * FROM keys WHERE account_id = ? AND key_id > ? ORDER BY key_id LIMIT ?'),
      deleteKey: d.prepare('DELETE FROM keys WHERE key_id = ?'),
      insertMaterial: d.prepare('INSERT INTO key_materials VALUES (?,?,?,?,?,?)'),
      activateMaterial: d.prepare("UPDATE key_materials SET state = 'active' WHERE key_id = ? AND version = ?"),
      getMaterial: d.prepare('SELECT * FROM key_materials WHERE key_id = ? AND version = ?'),
      listMaterials: d.prepare('SELECT * FROM key_materials WHERE key_id = ? ORDER BY version'),
      pendingMaterials: d.prepare("SELECT * FROM key_materials WHERE state = 'pending'"),
      deleteMaterial: d.prepare('DELETE FROM key_materials WHERE key_id = ? AND version = ?'),
      allObjectIds: d.prepare('SELECT object_id FROM key_materials').pluck(),
      objectIdsIn: d.prepare(`SELECT m.object_id FROM key_materials m JOIN keys k ON k.key_id = m.key_id
        WHERE k.custom_key_store_id IS ?`).pluck(),
      getAlias: d.prepare('SELECT * FROM aliases WHERE account_id = ? AND alias_name = ?'),
      listAliases: d.prepare('SELECT * FROM aliases WHERE account_id = ? AND alias_name > ? ORDER BY alias_name LIMIT ?'),
      listAliasesForKey: d.prepare(
        'SELECT * FROM aliases WHERE account_id = ? AND key_id = ? AND alias_name > ? ORDER BY alias_name LIMIT ?'),
      countAliases: d.prepare('SELECT COUNT(*) FROM aliases WHERE key_id = ?').pluck(),
      insertAlias: d.prepare('INSERT INTO aliases VALUES (?,?,?,?,?)'),
      updateAlias: d.prepare('UPDATE aliases SET key_id = ?, updated_at = ? WHERE account_id = ? AND alias_name = ?'),
      deleteAlias: d.prepare('DELETE FROM aliases WHERE account_id = ? AND alias_name = ?'),
      getTags: d.prepare('SELECT tag_key AS "TagKey", tag_value AS "TagValue" FROM tags WHERE key_id = ? ORDER BY tag_key'),
      putTag: d.prepare(
        'INSERT INTO tags VALUES (?,?,?) ON CONFLICT(key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value'),
      removeTag: d.prepare('DELETE FROM tags WHERE key_id = ? AND tag_key = ?'),
    };
    this.lifecycle = new SqliteLifecycleStore(d);
    this.keyStores = new SqliteKeyStoreTable(d);
    this.keyUsage = new SqliteKeyUsageTable(d);
    this.multiRegion = new SqliteMultiRegionTable(d);
  }

  protected tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  createKeyPending(key: KeyRecord, m: KeyMaterialRecord, tags: Tag[]): void {
    this.tx(() => {
      this.stmt.insertKey.run(keyRow(key));
      this.stmt.insertMaterial.run(m.keyId, m.version, m.materialId, m.objectId, m.state, m.createdAt);
      for (const t of tags) this.stmt.putTag.run(key.keyId, t.TagKey, t.TagValue);
    });
    this.keyCache.delete(key.keyId);
  }

  activateMaterial(keyId: string, version: number, keyState?: KeyRecord['state']): void {
    this.tx(() => {
      this.stmt.activateMaterial.run(keyId, version);
      if (keyState) this.updateKey(keyId, { state: keyState });
    });
    this.materialCache.delete(`${keyId}:${version}`);
  }

  /** Whether the write-through caches may answer (a shared database says when: src/store/pg/store.ts). */
  protected get cacheTrusted(): boolean {
    return true;
  }

  getKey(keyId: string): KeyRecord | undefined {
    const trusted = this.cacheTrusted;
    const cached = trusted ? this.keyCache.get(keyId) : undefined;
    if (cached) return cached;
    const row = this.stmt.getKey.get(keyId) as KeyRow | undefined;
    if (!row) return undefined;
    const key = toKey(row);
    if (trusted) this.keyCache.set(keyId, key);
    return key;
  }

  listKeys(accountId: string, limit: number, marker?: string): Page<KeyRecord> {
    const after = decodeMarker(marker) ?? '';
    const rows = this.stmt.listKeys.all(accountId, after, limit + 1) as KeyRow[];
    return this.page(rows.map(toKey), limit, (k) => k.keyId);
  }

  private page<T>(items: T[], limit: number, sortKey: (t: T) => string): Page<T> {
    if (items.length <= limit) return { items };
    const shown = items.slice(0, limit);
    return { items: shown, nextMarker: encodeMarker(sortKey(shown[shown.length - 1] as T)) };
  }

  updateKey(keyId: string, patch: KeyPatch): KeyRecord {
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const [field, value] of Object.entries(patch) as [keyof KeyPatch, unknown][]) {
      sets.push(`${KEY_COLUMNS[field]} = ?`);
      values.push(value ?? null);
    }
    this.keyCache.delete(keyId);
    if (sets.length) this.db.prepare(`UPDATE keys SET ${sets.join(', ')} WHERE key_id = ?`).run(...values, keyId);
    const key = this.getKey(keyId);
    if (!key) throw Errors.notFound(`Key '${keyId}' does not exist`);
    return key;
  }

  deleteKey(keyId: string): void {
    this.stmt.deleteKey.run(keyId);
    this.keyCache.delete(keyId);
    this.grantCache.delete(keyId);
    for (const k of this.materialCache.keys()) if (k.startsWith(`${keyId}:`)) this.materialCache.delete(k);
  }

  getMaterial(keyId: string, version: number): KeyMaterialRecord | undefined {
    const cacheKey = `${keyId}:${version}`;
    const trusted = this.cacheTrusted;
    const cached = trusted ? this.materialCache.get(cacheKey) : undefined;
    if (cached) return cached;
    const row = this.stmt.getMaterial.get(keyId, version) as MaterialRow | undefined;
    if (!row) return undefined;
    const m = toMaterial(row);
    if (m.state === 'active' && trusted) this.materialCache.set(cacheKey, m);
    return m;
  }

  listMaterials(keyId: string): KeyMaterialRecord[] {
    return (this.stmt.listMaterials.all(keyId) as MaterialRow[]).map(toMaterial);
  }

  listPendingMaterials(): KeyMaterialRecord[] {
    return (this.stmt.pendingMaterials.all() as MaterialRow[]).map(toMaterial);
  }

  deleteMaterial(keyId: string, version: number): void {
    this.stmt.deleteMaterial.run(keyId, version);
    this.materialCache.delete(`${keyId}:${version}`);
  }

  allObjectIds(): Set<string> {
    return new Set((this.stmt.allObjectIds.all() as Buffer[]).map((b) => b.toString('hex')));
  }

  objectIdsIn(customKeyStoreId: string | null): Set<string> {
    return new Set((this.stmt.objectIdsIn.all(customKeyStoreId) as Buffer[]).map((b) => b.toString('hex')));
  }

  getAlias(accountId: string, aliasName: string): AliasRecord | undefined {
    const row = this.stmt.getAlias.get(accountId, aliasName) as AliasRow | undefined;
    return row && toAlias(row);
  }

  listAliases(accountId: string, limit: number, marker?: string, keyId?: string): Page<AliasRecord> {
    const after = decodeMarker(marker) ?? '';
    const rows = (
      keyId === undefined
        ? this.stmt.listAliases.all(accountId, after, limit + 1)
        : this.stmt.listAliasesForKey.all(accountId, keyId, after, limit + 1)
    ) as AliasRow[];
    return this.page(rows.map(toAlias), limit, (a) => a.aliasName);
  }

  countAliasesForKey(keyId: string): number {
    return this.stmt.countAliases.get(keyId) as number;
  }

  createAlias(a: AliasRecord): void {
    this.stmt.insertAlias.run(a.accountId, a.aliasName, a.keyId, a.createdAt, a.updatedAt);
  }

  updateAlias(accountId: string, aliasName: string, keyId: string, updatedAt: number): void {
    this.stmt.updateAlias.run(keyId, updatedAt, accountId, aliasName);
  }

  deleteAlias(accountId: string, aliasName: string): void {
    this.stmt.deleteAlias.run(accountId, aliasName);
  }

  getTags(keyId: string): Tag[] {
    return this.stmt.getTags.all(keyId) as Tag[];
  }

  putTags(keyId: string, tags: Tag[]): void {
    this.tx(() => {
      for (const t of tags) this.stmt.putTag.run(keyId, t.TagKey, t.TagValue);
    });
  }

  removeTags(keyId: string, tagKeys: string[]): void {
    this.tx(() => {
      for (const k of tagKeys) this.stmt.removeTag.run(keyId, k);
    });
  }

  countKeysByState(): Record<string, number> {
    const rows = this.db.prepare('SELECT state, COUNT(*) AS n FROM keys GROUP BY state').all() as { state: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  close(): void {
    this.db.close();
  }

  // ── Key lifecycle (issue #4) ──

  transaction<T>(fn: () => T): T {
    try {
      return this.tx(fn);
    } catch (e) {
      // A rolled-back write may have refreshed a cache entry from uncommitted rows.
      this.keyCache.clear();
      this.materialCache.clear();
      throw e;
    }
  }

  createKey(key: KeyRecord, tags: Tag[]): void {
    this.tx(() => {
      this.stmt.insertKey.run(keyRow(key));
      for (const t of tags) this.stmt.putTag.run(key.keyId, t.TagKey, t.TagValue);
    });
    this.keyCache.delete(key.keyId);
  }

  addPendingMaterial(m: KeyMaterialRecord): void {
    this.stmt.insertMaterial.run(m.keyId, m.version, m.materialId, m.objectId, m.state, m.createdAt);
    this.materialCache.delete(`${m.keyId}:${m.version}`);
  }

  // ---- Authorization (issue #3): credentials, identity policies, grants ----

  protected readonly grantCache = new Map<string, readonly GrantRecord[]>();
  private authzStmts?: ReturnType<SqliteStore['prepareAuthz']>;

  private prepareAuthz() {
    const d = this.db;
    return {
      listCredentials: d.prepare('SELECT * FROM credentials ORDER BY access_key_id'),
      putCredential: d.prepare(`INSERT INTO credentials VALUES (@access_key_id,@principal_arn,@sealed_secret,@enabled,@created_at,
        @description) ON CONFLICT(access_key_id) DO UPDATE SET principal_arn = excluded.principal_arn,
        sealed_secret = excluded.sealed_secret, enabled = excluded.enabled, description = excluded.description`),
      setCredentialEnabled: d.prepare('UPDATE credentials SET enabled = ? WHERE access_key_id = ?'),
      deleteCredential: d.prepare('DELETE FROM credentials WHERE access_key_id = ?'),
      listIdentityPolicies: d.prepare('SELECT * FROM identity_policies ORDER BY principal_arn, policy_name'),
      putIdentityPolicy: d.prepare(`INSERT INTO identity_policies VALUES (?,?,?)
        ON CONFLICT(principal_arn, policy_name) DO UPDATE SET document = excluded.document`),
      deleteIdentityPolicy: d.prepare('DELETE FROM identity_policies WHERE principal_arn = ? AND policy_name = ?'),
      grantsForKey: d.prepare('SELECT * FROM grants WHERE key_id = ? ORDER BY grant_id'),
      getGrant: d.prepare('SELECT * FROM grants WHERE grant_id = ?'),
      listGrants: d.prepare(`SELECT * FROM grants WHERE key_id = @key AND grant_id > @after
        AND (CAST(@grant AS TEXT) IS NULL OR grant_id = @grant)
        AND (CAST(@grantee AS TEXT) IS NULL OR grantee_principal = @grantee)
        ORDER BY grant_id LIMIT @limit`),
      listRetirable: d.prepare(
        'SELECT * FROM grants WHERE retiring_principal = ? AND grant_id > ? ORDER BY grant_id LIMIT ?'),
      insertGrant: d.prepare(`INSERT INTO grants VALUES (@grant_id,@key_id,@name,@grantee_principal,@retiring_principal,
        @operations,@constraints,@issuing_account,@created_at,@token)`),
      deleteGrant: d.prepare('DELETE FROM grants WHERE grant_id = ?'),
    };
  }

  private get a() {
    return (this.authzStmts ??= this.prepareAuthz());
  }

  listCredentials(): CredentialRecord[] {
    return (this.a.listCredentials.all() as CredentialRow[]).map((r) => ({
      accessKeyId: r.access_key_id, principalArn: r.principal_arn, sealedSecret: r.sealed_secret,
      enabled: r.enabled === 1, createdAt: r.created_at, description: r.description,
    }));
  }

  putCredential(c: CredentialRecord): void {
    this.a.putCredential.run({
      access_key_id: c.accessKeyId, principal_arn: c.principalArn, sealed_secret: c.sealedSecret,
      enabled: c.enabled ? 1 : 0, created_at: c.createdAt, description: c.description,
    });
  }

  setCredentialEnabled(accessKeyId: string, enabled: boolean): void {
    this.a.setCredentialEnabled.run(enabled ? 1 : 0, accessKeyId);
  }

  deleteCredential(accessKeyId: string): void {
    this.a.deleteCredential.run(accessKeyId);
  }

  listIdentityPolicies(): IdentityPolicyRecord[] {
    return (this.a.listIdentityPolicies.all() as { principal_arn: string; policy_name: string; document: string }[]).map(
      (r) => ({ principalArn: r.principal_arn, policyName: r.policy_name, document: r.document }),
    );
  }

  putIdentityPolicy(p: IdentityPolicyRecord): void {
    this.a.putIdentityPolicy.run(p.principalArn, p.policyName, p.document);
  }

  deleteIdentityPolicy(principalArn: string, policyName: string): void {
    this.a.deleteIdentityPolicy.run(principalArn, policyName);
  }

  grantsForKey(keyId: string): readonly GrantRecord[] {
    const trusted = this.cacheTrusted;
    let grants = trusted ? this.grantCache.get(keyId) : undefined;
    if (!grants) {
      grants = Object.freeze((this.a.grantsForKey.all(keyId) as GrantRow[]).map(toGrant));
      if (trusted) this.grantCache.set(keyId, grants);
    }
    return grants;
  }

  getGrant(grantId: string): GrantRecord | undefined {
    const row = this.a.getGrant.get(grantId) as GrantRow | undefined;
    return row && toGrant(row);
  }

  listGrants(keyId: string, limit: number, marker?: string, filter: GrantFilter = {}): Page<GrantRecord> {
    const rows = this.a.listGrants.all({
      key: keyId, after: decodeMarker(marker) ?? '', grant: filter.grantId ?? null,
      grantee: filter.granteePrincipal ?? null, limit: limit + 1,
    }) as GrantRow[];
    return this.page(rows.map(toGrant), limit, (g) => g.grantId);
  }

  listRetirableGrants(retiringPrincipal: string, limit: number, marker?: string): Page<GrantRecord> {
    const rows = this.a.listRetirable.all(retiringPrincipal, decodeMarker(marker) ?? '', limit + 1) as GrantRow[];
    return this.page(rows.map(toGrant), limit, (g) => g.grantId);
  }

  createGrant(g: GrantRecord): void {
    this.a.insertGrant.run({
      grant_id: g.grantId, key_id: g.keyId, name: g.name ?? null, grantee_principal: g.granteePrincipal,
      retiring_principal: g.retiringPrincipal ?? null, operations: JSON.stringify(g.operations),
      constraints: g.constraints ? JSON.stringify(g.constraints) : null, issuing_account: g.issuingAccount,
      created_at: g.createdAt, token: g.token,
    });
    this.grantCache.delete(g.keyId);
  }

  deleteGrant(grantId: string): void {
    const g = this.getGrant(grantId);
    this.a.deleteGrant.run(grantId);
    if (g) this.grantCache.delete(g.keyId);
  }
}

interface CredentialRow {
  access_key_id: string; principal_arn: string; sealed_secret: Buffer; enabled: number; created_at: number; description: string;
}
interface GrantRow {
  grant_id: string; key_id: string; name: string | null; grantee_principal: string; retiring_principal: string | null;
  operations: string; constraints: string | null; issuing_account: string; created_at: number; token: string;
}
const toGrant = (r: GrantRow): GrantRecord => ({
  grantId: r.grant_id, keyId: r.key_id, name: r.name ?? undefined, granteePrincipal: r.grantee_principal,
  retiringPrincipal: r.retiring_principal ?? undefined, operations: JSON.parse(r.operations) as string[],
  constraints: r.constraints ? (JSON.parse(r.constraints) as GrantRecord['constraints']) : undefined,
  issuingAccount: r.issuing_account, createdAt: r.created_at, token: r.token,
});

/**
 * The metadata (key ids, policies, sealed credentials) is readable by the daemon's user only: the
 * file is created 0600 before SQLite opens it (SQLite would create it 0644 under the usual
 * umask), and an existing file from an older version is narrowed to 0600.
 */
function ownerOnly(path: string): void {
  if (path === ':memory:') return;
  if (existsSync(path)) chmodSync(path, 0o600);
  else closeSync(openSync(path, 'a', 0o600));
}
