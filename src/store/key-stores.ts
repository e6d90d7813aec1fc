import type { SqlDriver } from './sql-driver.js';
import type { Page } from './page.js';

/**
 * Custom key stores (issue #6): one row per store. The store's KeyStorePassword (the token's
 * user PIN) is kept only sealed under the daemon's token key (src/kms/secret-box.ts). The
 * connection state itself lives in memory (src/kms/key-store-registry.ts); the row keeps only
 * whether the operator wants the store connected, so a restart reconnects it.
 */
export const KEY_STORES_SCHEMA = `
CREATE TABLE IF NOT EXISTS custom_key_stores (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  hsm_name TEXT NOT NULL UNIQUE,
  trust_anchor TEXT,
  sealed_password BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  want_connected INTEGER NOT NULL,
  connection_state TEXT NOT NULL DEFAULT 'DISCONNECTED',
  connection_error_code TEXT,
  connection_epoch INTEGER NOT NULL DEFAULT 0,
  connection_owner TEXT,
  UNIQUE (account_id, name)
);
`;

/** The connection columns, added to databases made before the state was shared (like the PostgreSQL store's migration 4). */
export const KEY_STORES_CONNECTION_COLUMNS: readonly [string, string][] = [
  ['connection_state', "TEXT NOT NULL DEFAULT 'DISCONNECTED'"],
  ['connection_error_code', 'TEXT'],
  ['connection_epoch', 'INTEGER NOT NULL DEFAULT 0'],
  ['connection_owner', 'TEXT'],
];
/** A store left wanted-connected by an older version was CONNECTED as far as its operator knew. */
export const KEY_STORES_CONNECTION_BACKFILL = "UPDATE custom_key_stores SET connection_state = 'CONNECTED' WHERE want_connected = 1";

export type StoredConnectionState = 'CONNECTED' | 'CONNECTING' | 'DISCONNECTED' | 'DISCONNECTING' | 'FAILED';

export interface CustomKeyStoreRecord {
  id: string;
  accountId: string;
  name: string;
  type: 'AWS_CLOUDHSM';
  /** The configured HSM (config `hsms`), shown as CloudHsmClusterId. */
  hsmName: string;
  trustAnchor?: string | undefined;
  /** Version ‖ IV ‖ AES-GCM(PIN) ‖ tag, sealed by SecretBox. */
  sealedPassword: Buffer;
  createdAt: number;
  /** The store is connected, or lost everywhere and being retried: every node keeps (re)opening its sessions. */
  wantConnected: boolean;
  /** The cluster-wide ConnectionState. */
  connectionState: StoredConnectionState;
  /** ConnectionErrorCode, kept with FAILED. */
  connectionErrorCode?: string | undefined;
  /** Bumped by every Connect and Disconnect; state writes are conditional on it. */
  connectionEpoch: number;
  /** The daemon instance running the CONNECTING or DISCONNECTING step. */
  connectionOwner?: string | undefined;
}

/** A conditional change of the connection state (KeyStoreTable.transition). */
export interface ConnectionTransition {
  state: StoredConnectionState;
  errorCode?: string | undefined;
  wantConnected?: boolean;
  owner?: string | undefined;
  /** A new epoch (Connect, Disconnect): older work in progress gives up. */
  bumpEpoch?: boolean;
}

export type CustomKeyStorePatch = Partial<Pick<CustomKeyStoreRecord, 'name' | 'hsmName' | 'sealedPassword' | 'wantConnected' | 'trustAnchor'>>;

export interface KeyStoreTable {
  get(id: string): CustomKeyStoreRecord | undefined;
  getByName(accountId: string, name: string): CustomKeyStoreRecord | undefined;
  getByHsm(hsmName: string): CustomKeyStoreRecord | undefined;
  list(accountId: string, limit: number, after: string): Page<CustomKeyStoreRecord>;
  all(): CustomKeyStoreRecord[];
  insert(r: CustomKeyStoreRecord): void;
  update(id: string, patch: CustomKeyStorePatch): void;
  delete(id: string): void;
  /** Keys (in any state) that live in the store. */
  countKeys(id: string): number;
  /**
   * Writes a new connection state if the row still has `epoch` and one of the states `from`;
   * returns the row as written, or undefined when another change came first.
   */
  transition(id: string, epoch: number, from: readonly StoredConnectionState[], to: ConnectionTransition): CustomKeyStoreRecord | undefined;
}

interface Row {
  id: string; account_id: string; name: string; type: string; hsm_name: string; trust_anchor: string | null;
  sealed_password: Buffer; created_at: number; want_connected: number;
  connection_state: string; connection_error_code: string | null; connection_epoch: number | string; connection_owner: string | null;
}

const toRecord = (r: Row): CustomKeyStoreRecord => ({
  id: r.id, accountId: r.account_id, name: r.name, type: r.type as 'AWS_CLOUDHSM', hsmName: r.hsm_name,
  trustAnchor: r.trust_anchor ?? undefined, sealedPassword: r.sealed_password, createdAt: r.created_at,
  wantConnected: r.want_connected === 1, connectionState: r.connection_state as StoredConnectionState,
  connectionErrorCode: r.connection_error_code ?? undefined, connectionEpoch: Number(r.connection_epoch),
  connectionOwner: r.connection_owner ?? undefined,
});

const COLUMNS: Record<keyof CustomKeyStorePatch, string> = {
  name: 'name', hsmName: 'hsm_name', sealedPassword: 'sealed_password', wantConnected: 'want_connected', trustAnchor: 'trust_anchor',
};

export class SqliteKeyStoreTable implements KeyStoreTable {
  private readonly stmt;

  constructor(private readonly db: SqlDriver) {
    this.stmt = {
      get: db.prepare('SELECT * FROM custom_key_stores WHERE id = ?'),
      getByName: db.prepare('SELECT * FROM custom_key_stores WHERE account_id = ? AND name = ?'),
      getByHsm: db.prepare('SELECT * FROM custom_key_stores WHERE hsm_name = ?'),
      list: db.prepare('SELECT * FROM custom_key_stores WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?'),
      all: db.prepare('SELECT * FROM custom_key_stores ORDER BY id'),
      insert: db.prepare(`INSERT INTO custom_key_stores (id, account_id, name, type, hsm_name, trust_anchor, sealed_password,
        created_at, want_connected, connection_state, connection_epoch) VALUES (?,?,?,?,?,?,?,?,?,?,?)`),
      delete: db.prepare('DELETE FROM custom_key_stores WHERE id = ?'),
      countKeys: db.prepare('SELECT COUNT(*) FROM keys WHERE custom_key_store_id = ?').pluck(),
    };
  }

  get(id: string) {
    const r = this.stmt.get.get(id) as Row | undefined;
    return r && toRecord(r);
  }

  getByName(accountId: string, name: string) {
    const r = this.stmt.getByName.get(accountId, name) as Row | undefined;
    return r && toRecord(r);
  }

  getByHsm(hsmName: string) {
    const r = this.stmt.getByHsm.get(hsmName) as Row | undefined;
    return r && toRecord(r);
  }

  list(accountId: string, limit: number, after: string): Page<CustomKeyStoreRecord> {
    const rows = (this.stmt.list.all(accountId, after, limit + 1) as Row[]).map(toRecord);
    if (rows.length <= limit) return { items: rows };
    const shown = rows.slice(0, limit);
    return { items: shown, nextMarker: (shown[shown.length - 1] as CustomKeyStoreRecord).id };
  }

  all() {
    return (this.stmt.all.all() as Row[]).map(toRecord);
  }

  insert(r: CustomKeyStoreRecord): void {
    this.stmt.insert.run(
      r.id, r.accountId, r.name, r.type, r.hsmName, r.trustAnchor ?? null, r.sealedPassword, r.createdAt, r.wantConnected ? 1 : 0,
      r.connectionState, r.connectionEpoch,
    );
  }

  transition(id: string, epoch: number, from: readonly StoredConnectionState[], to: ConnectionTransition): CustomKeyStoreRecord | undefined {
    const want = to.wantConnected === undefined ? null : to.wantConnected ? 1 : 0;
    const { changes } = this.db
      .prepare(`UPDATE custom_key_stores SET connection_state = ?, connection_error_code = ?,
        want_connected = coalesce(?, want_connected), connection_owner = ?, connection_epoch = connection_epoch + ?
        WHERE id = ? AND connection_epoch = ? AND connection_state IN (${from.map(() => '?').join(', ')})`)
      .run(to.state, to.errorCode ?? null, want, to.owner ?? null, to.bumpEpoch ? 1 : 0, id, epoch, ...from);
    return changes ? this.get(id) : undefined;
  }

  update(id: string, patch: CustomKeyStorePatch): void {
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const [field, value] of Object.entries(patch) as [keyof CustomKeyStorePatch, unknown][]) {
      sets.push(`${COLUMNS[field]} = ?`);
      values.push(typeof value === 'boolean' ? (value ? 1 : 0) : (value ?? null));
    }
    if (sets.length) this.db.prepare(`UPDATE custom_key_stores SET ${sets.join(', ')} WHERE id = ?`).run(...values, id);
  }

  delete(id: string): void {
    this.stmt.delete.run(id);
  }

  countKeys(id: string): number {
    return this.stmt.countKeys.get(id) as number;
  }
}
