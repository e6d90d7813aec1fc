import { KEY_STORES_CONNECTION_BACKFILL, KEY_STORES_CONNECTION_COLUMNS } from '../key-stores.js';
import type { SyncPg } from './sync-client.js';

/**
 * Versioned schema of the PostgreSQL store. Each migration runs once, in its own transaction,
 * in order; the applied versions are rows of p11kms_schema. Start-up takes an advisory lock
 * around the whole check so that nodes starting together do not race, and refuses a database
 * whose schema is newer than this code knows (a newer p11kms migrated it: running older code
 * on it could misread or damage rows). Never edit a released migration: add the next one.
 * (Version 1 takes its notification channel as a parameter; for the default region's schema it
 * renders the released text unchanged, test/unit/pg-migrations.test.ts.) Each further region's
 * schema has its own p11kms_schema and runs the same migrations (storeSchema below).
 *
 * The tables mirror the SQLite store's (src/store/sqlite.ts, lifecycle.ts, key-stores.ts) with
 * PostgreSQL types: BIGINT for millisecond timestamps, BYTEA for blobs. Secrets are stored
 * exactly as in SQLite: sealed under the token's key, never in clear.
 */

export const MIGRATION_LOCK = [0x70316b, 1] as const;

/** The change feed's notification channel of the default region's schema (see storeSchema for the others). */
export const DEFAULT_CHANNEL = 'p11kms_changes';

/**
 * Version 1, for a schema whose change notes go out on `channel`. The default region's schema
 * has DEFAULT_CHANNEL, so its text is exactly the released one; a further region's schema
 * (created fresh by the code that gave regions their own schemas) has its own channel, so that
 * one region's notifications never reach another region's feed (their sequence numbers differ).
 */
const V1 = (channel: string) => `
CREATE TABLE keys (
  key_id TEXT PRIMARY KEY, arn TEXT NOT NULL, account_id TEXT NOT NULL, region TEXT NOT NULL, created_at BIGINT NOT NULL,
  description TEXT NOT NULL, key_usage TEXT NOT NULL, key_spec TEXT NOT NULL, origin TEXT NOT NULL, key_manager TEXT NOT NULL,
  state TEXT NOT NULL, policy TEXT NOT NULL, current_version INTEGER NOT NULL, deletion_date BIGINT, custom_key_store_id TEXT
);
CREATE INDEX keys_by_account ON keys(account_id, key_id);
CREATE INDEX keys_by_key_store ON keys(custom_key_store_id) WHERE custom_key_store_id IS NOT NULL;
CREATE INDEX keys_pending_deletion ON keys(deletion_date) WHERE state = 'PendingDeletion';
CREATE TABLE key_materials (
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  version INTEGER NOT NULL,
  material_id TEXT NOT NULL,
  object_id BYTEA NOT NULL UNIQUE,
  state TEXT NOT NULL CHECK (state IN ('pending','active')),
  created_at BIGINT NOT NULL,
  -- The daemon instance that wrote the row (its session setting): a pending row is another
  -- node's work in progress until that instance is gone (see store.ts, listPendingMaterials).
  owner TEXT DEFAULT current_setting('p11kms.instance', true),
  PRIMARY KEY (key_id, version)
);
CREATE TABLE aliases (
  account_id TEXT NOT NULL, alias_name TEXT NOT NULL, key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (account_id, alias_name)
);
CREATE INDEX aliases_by_key ON aliases(key_id);
CREATE TABLE tags (
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE, tag_key TEXT NOT NULL, tag_value TEXT NOT NULL,
  PRIMARY KEY (key_id, tag_key)
);
CREATE TABLE credentials (
  access_key_id TEXT PRIMARY KEY, principal_arn TEXT NOT NULL, sealed_secret BYTEA NOT NULL, enabled INTEGER NOT NULL,
  created_at BIGINT NOT NULL, description TEXT NOT NULL
);
CREATE TABLE identity_policies (
  principal_arn TEXT NOT NULL, policy_name TEXT NOT NULL, document TEXT NOT NULL, PRIMARY KEY (principal_arn, policy_name)
);
CREATE TABLE grants (
  grant_id TEXT PRIMARY KEY, key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE, name TEXT,
  grantee_principal TEXT NOT NULL, retiring_principal TEXT, operations TEXT NOT NULL, constraints TEXT,
  issuing_account TEXT NOT NULL, created_at BIGINT NOT NULL, token TEXT NOT NULL
);
CREATE INDEX grants_by_key ON grants(key_id, grant_id);
CREATE INDEX grants_by_retiring ON grants(retiring_principal, grant_id);
CREATE TABLE key_rotation (
  key_id TEXT PRIMARY KEY REFERENCES keys(key_id) ON DELETE CASCADE, enabled INTEGER NOT NULL, period_days INTEGER NOT NULL,
  anchor_at BIGINT NOT NULL, next_rotation_at BIGINT
);
CREATE INDEX key_rotation_due ON key_rotation(next_rotation_at) WHERE enabled = 1;
CREATE TABLE key_material_info (
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE, version INTEGER NOT NULL, material_id TEXT NOT NULL,
  created_at BIGINT NOT NULL, rotation_type TEXT CHECK (rotation_type IN ('AUTOMATIC','ON_DEMAND')), rotated_at BIGINT,
  imported INTEGER NOT NULL DEFAULT 0, import_state TEXT CHECK (import_state IN ('IMPORTED','PENDING_IMPORT')),
  pending_rotation INTEGER NOT NULL DEFAULT 0,
  expiration_model TEXT CHECK (expiration_model IN ('KEY_MATERIAL_EXPIRES','KEY_MATERIAL_DOES_NOT_EXPIRE')),
  valid_to BIGINT, description TEXT, PRIMARY KEY (key_id, version)
);
CREATE INDEX key_material_expiry ON key_material_info(valid_to) WHERE import_state = 'IMPORTED';
CREATE TABLE import_tokens (
  token_id BYTEA PRIMARY KEY, key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  wrapping_algorithm TEXT NOT NULL, wrapping_key_spec TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
  owner TEXT DEFAULT current_setting('p11kms.instance', true)
);
CREATE INDEX import_tokens_by_key ON import_tokens(key_id, created_at);
CREATE INDEX import_tokens_expiry ON import_tokens(expires_at);
CREATE TABLE key_deletions (
  key_id TEXT PRIMARY KEY, arn TEXT NOT NULL, account_id TEXT NOT NULL, origin TEXT NOT NULL, scheduled_for BIGINT NOT NULL,
  deleted_at BIGINT NOT NULL, objects_destroyed INTEGER NOT NULL
);
CREATE TABLE custom_key_stores (
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, hsm_name TEXT NOT NULL UNIQUE,
  trust_anchor TEXT, sealed_password BYTEA NOT NULL, created_at BIGINT NOT NULL, want_connected INTEGER NOT NULL,
  UNIQUE (account_id, name)
);

-- The change feed: every write to a table that a node caches adds a row here (in the writer's
-- transaction) and a NOTIFY carrying its sequence number, delivered at commit. Nodes drop the
-- cached rows it names; the same rows are polled, so a lost notification only delays.
CREATE TABLE p11kms_changes (
  seq BIGSERIAL PRIMARY KEY,
  entity TEXT NOT NULL,
  ref TEXT NOT NULL,
  at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX p11kms_changes_at ON p11kms_changes(at);
CREATE FUNCTION p11kms_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  row jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
  ref text := '';
  i int;
  s bigint;
BEGIN
  FOR i IN 0 .. TG_NARGS - 1 LOOP
    ref := ref || CASE WHEN i > 0 THEN '/' ELSE '' END || coalesce(row ->> TG_ARGV[i], '');
  END LOOP;
  INSERT INTO p11kms_changes (entity, ref) VALUES (TG_TABLE_NAME, ref) RETURNING seq INTO s;
  PERFORM pg_notify('${channel}', s || ' ' || TG_TABLE_NAME || ' ' || ref);
  RETURN NULL;
END $$;
CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE ON keys FOR EACH ROW EXECUTE FUNCTION p11kms_note_change('key_id');
CREATE TRIGGER key_materials_changed AFTER INSERT OR UPDATE OR DELETE ON key_materials FOR EACH ROW EXECUTE FUNCTION p11kms_note_change('key_id');
CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE ON aliases FOR EACH ROW EXECUTE FUNCTION p11kms_note_change('account_id', 'alias_name');
CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE ON grants FOR EACH ROW EXECUTE FUNCTION p11kms_note_change('key_id');
CREATE TRIGGER credentials_changed AFTER INSERT OR UPDATE OR DELETE ON credentials FOR EACH ROW EXECUTE FUNCTION p11kms_note_change('access_key_id');
CREATE TRIGGER identity_policies_changed AFTER INSERT OR UPDATE OR DELETE ON identity_policies FOR EACH ROW EXECUTE FUNCTION p11kms_note_change('principal_arn');
CREATE TRIGGER custom_key_stores_changed AFTER INSERT OR UPDATE OR DELETE ON custom_key_stores FOR EACH ROW EXECUTE FUNCTION p11kms_note_change('id');
`;

/** Key last usage (src/store/key-usage.ts). */
const V2 = `
CREATE TABLE key_last_usage (
  key_id TEXT PRIMARY KEY REFERENCES keys(key_id) ON DELETE CASCADE, operation TEXT NOT NULL, used_at BIGINT NOT NULL,
  event_id TEXT NOT NULL, request_id TEXT NOT NULL
);
CREATE TABLE store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

/** Multi-Region keys (src/store/multi-region.ts): the same tables as SQLite's (read uncached, so no change notes). */
const V3 = `
CREATE TABLE multi_region_keys (
  key_id TEXT PRIMARY KEY REFERENCES keys(key_id) ON DELETE CASCADE,
  primary_region TEXT NOT NULL,
  replica_regions TEXT NOT NULL,
  pending_window_days INTEGER,
  wrappable INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE pending_replicas (
  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,
  region TEXT NOT NULL,
  creation TEXT NOT NULL,
  PRIMARY KEY (key_id, region)
);
`;

/**
 * One connection state per custom key store, cluster-wide (src/store/key-stores.ts): the state,
 * error code, epoch and owner columns (the table's change trigger already notifies every node),
 * and each node's own reachability of each store (src/kms/key-store-registry.ts), which only the
 * nodes read, uncached.
 */
const V4 = `
${KEY_STORES_CONNECTION_COLUMNS.map(([name, type]) => `ALTER TABLE custom_key_stores ADD COLUMN ${name} ${type};`).join('\n')}
${KEY_STORES_CONNECTION_BACKFILL};
CREATE TABLE custom_key_store_reach (
  store_id TEXT NOT NULL REFERENCES custom_key_stores(id) ON DELETE CASCADE,
  instance TEXT NOT NULL,
  reachable INTEGER NOT NULL,
  error_code TEXT,
  at BIGINT NOT NULL,
  PRIMARY KEY (store_id, instance)
);
`;

/** Index = version - 1; the text of each for a schema whose change notes go out on `channel`. */
export function migrations(channel = DEFAULT_CHANNEL): readonly string[] {
  return [V1(channel), V2, V3, V4];
}

/**
 * Where a store's tables live: the default region's store in the connection's own search_path
 * (`public` unless the URL says otherwise, as before regions had schemas), a further region's
 * in the schema `p11kms_<region, - as _>` of the same database, with its own change channel.
 */
export interface StoreSchema {
  /** Undefined: the connection's search_path (the default region). */
  name?: string;
  channel: string;
}

export function storeSchema(region?: string): StoreSchema {
  if (!region) return { channel: DEFAULT_CHANNEL };
  // Region names are [a-z0-9-] (src/config.ts): the schema and channel names are plain lower-case identifiers.
  const name = `p11kms_${region.replace(/-/g, '_')}`;
  const channel = `${name}_changes`;
  // PostgreSQL truncates identifiers at 63 bytes: two long region names could meet in one schema.
  if (!/^[a-z0-9_]+$/.test(name) || channel.length > 63) throw new Error(`region ${region}: no PostgreSQL schema name fits it (at most 48 characters)`);
  return { name, channel };
}

export class SchemaTooNewError extends Error {}

/** Brings the schema to the newest version this code knows; returns the version found and the version now. */
export function migrate(pg: SyncPg, schema: StoreSchema = storeSchema()): { from: number; to: number } {
  const MIGRATIONS = migrations(schema.channel);
  pg.query('SELECT pg_advisory_lock($1, $2)', MIGRATION_LOCK);
  try {
    // A region's schema: the connection's search_path names it alone (store.ts), so what follows is created in it.
    if (schema.name) pg.query(`CREATE SCHEMA IF NOT EXISTS "${schema.name}"`);
    pg.query('CREATE TABLE IF NOT EXISTS p11kms_schema (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
    const found = Number(pg.query('SELECT coalesce(max(version), 0) AS v FROM p11kms_schema').rows[0]?.v ?? 0);
    if (found > MIGRATIONS.length) {
      throw new SchemaTooNewError(
        `The metadata database has schema version ${found}, newer than this p11kms knows (${MIGRATIONS.length}). ` +
          'A newer p11kms has migrated it; run that version (or newer) on every node.',
      );
    }
    for (let v = found + 1; v <= MIGRATIONS.length; v++) {
      pg.query('BEGIN');
      try {
        pg.query(MIGRATIONS[v - 1] as string);
        pg.query('INSERT INTO p11kms_schema (version) VALUES ($1)', [v]);
        pg.query('COMMIT');
      } catch (e) {
        pg.query('ROLLBACK');
        throw e;
      }
    }
    return { from: found, to: MIGRATIONS.length };
  } finally {
    pg.query('SELECT pg_advisory_unlock($1, $2)', MIGRATION_LOCK);
  }
}
