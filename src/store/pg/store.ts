import { randomBytes } from 'node:crypto';
import { Errors, isKmsError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { PostgresHealth } from '../../model/database-health.js';
import { SqliteStore, toAlias, type AliasRow } from '../sqlite.js';
import type { GrantRecord } from '../authz-records.js';
import type { AliasRecord, KeyMaterialRecord, MetadataStore, SharedStore, StoreChange } from '../types.js';
import { ClusterLink } from './cluster-link.js';
import { PgDriver } from './driver.js';
import { migrate, storeSchema } from './migrations.js';
import { PgError, SyncPg } from './sync-client.js';

/**
 * The metadata store on PostgreSQL, for several daemons sharing one database.
 *
 * It is the SQL store of src/store/sqlite.ts running on a PostgreSQL driver (same statements,
 * same row mapping), plus what sharing needs:
 * - Caches that another node's write invalidates: the change feed (cluster-link.ts) names each
 *   changed row; key, version, grant and alias caches drop it, and subscribers (credentials,
 *   custom key stores) reload it. While the feed is not confirmed (staleMs), nothing is served
 *   from cache: reads go to the database, and fail with 503 when it is away.
 * - Inside a transaction, reads always go to the database.
 * - Pending version rows belong to the daemon instance that wrote them; reconciliation sees only
 *   those whose instance is gone (its advisory lock is free), never another node's work.
 * - Conflicting writes from two nodes end as AWS ends them (a second alias of one name:
 *   AlreadyExistsException), never as a raw database error.
 * - A further region of the deployment (`region`) has the same tables in its own schema of the
 *   same database (migrations.ts, storeSchema): its connections' search_path names that schema
 *   alone, its change feed has its own channel, its advisory locks of keys and grants are its own
 *   (a Multi-Region key has one id in every region), and it follows the default region's store
 *   for leadership (`leader`) rather than electing one of its own.
 */

const GRANT_LOCK_NS = 0x70316b04;
/** The namespace of the instance locks that cluster-link.ts takes (NS_INSTANCE). */
const INSTANCE_LOCK_NS = 0x70316b03;

export interface PgStoreOptions {
  url: string;
  /** This node's name (audit, logs); the instance id below is unique per process start. */
  nodeId: string;
  log: Logger;
  queryTimeoutMs?: number;
  pollMs?: number;
  staleMs?: number;
  /** A further region's store: its tables in that region's schema (undefined: the default region's). */
  region?: string;
  /** The store whose leadership this one follows (the default region's), instead of taking the leader lock itself. */
  leader?: SharedStore;
}

export type ChangeListener = (change: StoreChange) => void;

export class PgStore extends SqliteStore implements MetadataStore {
  readonly instanceId: string;
  private readonly aliasCache = new Map<string, AliasRecord>();
  private readonly listeners: ChangeListener[] = [];
  private link!: ClusterLink;

  private constructor(
    private readonly driver: PgDriver,
    instanceId: string,
    private readonly nodeId: string,
    private readonly schemaVersion: number,
    private readonly staleMs: number,
    /** Prefixes the names of this store's advisory locks of keys and grants ('' in the default region's schema). */
    private readonly lockScope: string,
  ) {
    super(driver);
    this.instanceId = instanceId;
  }

  static async open(opts: PgStoreOptions): Promise<PgStore> {
    const instanceId = `${opts.nodeId.replace(/[^\w.-]/g, '_')}.${randomBytes(6).toString('hex')}`;
    const queryTimeoutMs = opts.queryTimeoutMs ?? 3000;
    const connectTimeoutMs = Math.min(queryTimeoutMs, 2000);
    const schema = storeSchema(opts.region);
    // The schema alone on the search_path: a table missing from it is an error, never another region's table.
    const schemaUrl = schema.name ? withSessionOptions(opts.url, `-c search_path=${schema.name}`) : opts.url;
    const url = withSessionOptions(schemaUrl, `-c p11kms.instance=${instanceId}`);
    const pg = new SyncPg({ url, queryTimeoutMs, connectTimeoutMs, applicationName: `p11kms ${instanceId}` });
    let schemaVersion: number;
    try {
      const { from, to } = migrate(pg, schema);
      if (from !== to) opts.log.info({ from, to, schema: schema.name }, 'metadata database schema migrated');
      schemaVersion = to;
    } catch (e) {
      pg.close();
      // At start-up the operator needs the driver's reason (refused, unknown database, authentication), not the clients' 503 text.
      if (isKmsError(e) && pg.lastUnreachableWhy) throw new Error(`Cannot use the metadata database: ${pg.lastUnreachableWhy}`);
      throw e;
    }
    const staleMs = opts.staleMs ?? 1000;
    const lockScope = schema.name ? `${schema.name}/` : '';
    const store = new PgStore(new PgDriver(pg), instanceId, opts.nodeId, schemaVersion, staleMs, lockScope);
    const leader = opts.leader;
    store.link = new ClusterLink({
      url: schemaUrl, instanceId, pollMs: opts.pollMs ?? 200, staleMs, connectTimeoutMs, channel: schema.channel, lockScope,
      followLeader: leader && (() => leader.isLeader()),
      log: opts.log, onChange: (c) => store.applyChange(c), onGap: () => store.flushCaches(),
    });
    try {
      await store.link.start();
    } catch (e) {
      await store.link.close();
      pg.close();
      throw e;
    }
    return store;
  }

  /** Cluster-wide locks, leadership and the change feed (MetadataStore.shared). */
  get shared(): SharedStore {
    const link = this.link;
    return {
      instanceId: this.instanceId,
      lockKey: async (keyId) => {
        const unlock = await link.lockKey(keyId);
        // Whatever the lock's previous holder changed is read from the database, not a cache.
        this.forgetKey(keyId);
        return unlock;
      },
      tryLead: () => link.tryLead(),
      isLeader: () => link.isLeader,
      fresh: () => link.fresh,
      health: () => this.health(),
      onChange: (l) => this.onChange(l),
      abandonedImportTokenIds: () => this.abandonedImportTokenIds(),
      reportKeyStoreReach: (storeId, reachable, errorCode) => this.reportKeyStoreReach(storeId, reachable, errorCode),
      abandonedKeyStoreSteps: () => this.abandonedKeyStoreSteps(),
      release: () => link.close(),
    };
  }

  /**
   * Readiness as this node sees it: unavailable while the change feed is not confirmed within
   * staleMs (then nothing is served from cache, and reads go to a database that does not answer),
   * or while the latest statements failed for want of the database (unreachable, no answer by the
   * deadline) and none has been answered since, for staleMs after the last failure (a node taken
   * out of a load balancer gets no requests that could prove the database back; the feed watches
   * it meanwhile). A statement the server cancelled (statement_timeout: a lock held elsewhere)
   * fails its request with a 503 but does not make the node unready: the database answers.
   */
  private health(): PostgresHealth {
    const now = Date.now();
    const confirmedAt = this.link.confirmedAt;
    const { lastOkAt, lastUnreachableAt } = this.driver.pg.outcomes;
    const ago = (t: number) => (t ? now - t : null);
    let reason: string | undefined;
    if (!this.link.connected) reason = 'no connection to the database (the change feed is reconnecting)';
    else if (!this.link.fresh) reason = `the change feed has not been confirmed for ${ago(confirmedAt) ?? '?'} ms`;
    else if (lastUnreachableAt > lastOkAt && now - lastUnreachableAt < this.staleMs) reason = 'statements are failing: the database does not answer';
    return {
      kind: 'postgresql',
      state: reason ? 'unavailable' : 'ok',
      reason,
      lastConfirmedMsAgo: ago(confirmedAt),
      lastFailureMsAgo: ago(lastUnreachableAt),
      schemaVersion: this.schemaVersion,
      nodeId: this.nodeId,
      instanceId: this.instanceId,
      leader: this.link.isLeader,
    };
  }

  private forgetKey(keyId: string): void {
    this.applyChange({ seq: 0, entity: 'keys', ref: keyId });
    this.applyChange({ seq: 0, entity: 'key_materials', ref: keyId });
    this.applyChange({ seq: 0, entity: 'grants', ref: keyId });
  }

  protected override get cacheTrusted(): boolean {
    return !this.driver.inTransaction && this.link.fresh;
  }

  /** Called for every change any node makes to a cached table (this node's own included). */
  onChange(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  private applyChange(c: StoreChange): void {
    switch (c.entity) {
      case 'keys':
        this.keyCache.delete(c.ref);
        break;
      case 'key_materials':
        for (const k of this.materialCache.keys()) if (k.startsWith(`${c.ref}:`)) this.materialCache.delete(k);
        break;
      case 'grants':
        this.grantCache.delete(c.ref);
        break;
      case 'aliases':
        this.aliasCache.delete(c.ref);
        break;
    }
    for (const l of this.listeners) {
      try {
        l(c);
      } catch {
        /* a subscriber's failure must not stop the feed */
      }
    }
  }

  private flushCaches(): void {
    this.keyCache.clear();
    this.materialCache.clear();
    this.grantCache.clear();
    this.aliasCache.clear();
    for (const l of this.listeners) {
      try {
        l({ seq: 0, entity: '*', ref: '' });
      } catch {
        /* as above */
      }
    }
  }

  override getAlias(accountId: string, aliasName: string): AliasRecord | undefined {
    const ref = `${accountId}/${aliasName}`;
    const trusted = this.cacheTrusted;
    const hit = trusted ? this.aliasCache.get(ref) : undefined;
    if (hit) return hit;
    const row = this.db.prepare('SELECT * FROM aliases WHERE account_id = ? AND alias_name = ?').get(accountId, aliasName) as
      | AliasRow
      | undefined;
    const alias = row && toAlias(row);
    if (alias && trusted) this.aliasCache.set(ref, alias);
    return alias;
  }

  override createAlias(a: AliasRecord): void {
    try {
      super.createAlias(a);
    } catch (e) {
      // Another node created the same name between our check and our insert.
      if (e instanceof PgError && e.code === '23505') {
        const region = this.getKey(a.keyId)?.region ?? '';
        throw Errors.alreadyExists(`An alias with the name arn:aws:kms:${region}:${a.accountId}:${a.aliasName} already exists`);
      }
      throw e;
    }
  }

  /** Inside a transaction (CreateGrant's idempotency check), the key's grant list is locked until commit. */
  override grantsForKey(keyId: string): readonly GrantRecord[] {
    if (this.driver.inTransaction) this.db.prepare(`SELECT pg_advisory_xact_lock(${GRANT_LOCK_NS}, hashtext(?))`).get(this.lockScope + keyId);
    return super.grantsForKey(keyId);
  }

  override addPendingMaterial(m: KeyMaterialRecord): void {
    try {
      super.addPendingMaterial(m);
    } catch (e) {
      if (e instanceof PgError && e.code === '23505') {
        throw Errors.conflict('Another change of this key is in progress; try again.');
      }
      throw e;
    }
  }

  /**
   * Pending rows whose writer is gone: its instance lock is free (the process ended, or its
   * database connection did). pg_try_advisory_xact_lock takes the lock only for this statement.
   */
  override listPendingMaterials(): KeyMaterialRecord[] {
    const abandoned = this.db
      .prepare(`SELECT key_id, version FROM key_materials WHERE state = 'pending' AND ${ownerGone('owner')}`)
      .all(this.instanceId) as { key_id: string; version: number }[];
    const wanted = new Set(abandoned.map((r) => `${r.key_id}:${r.version}`));
    return super.listPendingMaterials().filter((m) => wanted.has(`${m.keyId}:${m.version}`));
  }

  private abandonedImportTokenIds(): Set<string> {
    const rows = this.db
      .prepare(`SELECT token_id FROM import_tokens WHERE ${ownerGone('owner')}`)
      .pluck()
      .all(this.instanceId) as Buffer[];
    return new Set(rows.map((b) => b.toString('hex')));
  }

  private reportKeyStoreReach(storeId: string, reachable: boolean, errorCode: string | undefined): boolean {
    this.db
      .prepare(`INSERT INTO custom_key_store_reach (store_id, instance, reachable, error_code, at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (store_id, instance) DO UPDATE SET reachable = excluded.reachable, error_code = excluded.error_code, at = excluded.at`)
      .run(storeId, this.instanceId, reachable ? 1 : 0, errorCode ?? null, Date.now());
    this.db
      .prepare(`DELETE FROM custom_key_store_reach WHERE store_id = ? AND ${ownerGone('instance')}`)
      .run(storeId, this.instanceId);
    // Written before read, by every node: of two nodes losing the store at once, the later reader sees the other's report.
    const others = this.db
      .prepare('SELECT count(*) FROM custom_key_store_reach WHERE store_id = ? AND instance <> ? AND reachable = 1')
      .pluck()
      .get(storeId, this.instanceId);
    return Number(others) > 0;
  }

  private abandonedKeyStoreSteps(): string[] {
    return this.db
      .prepare(`SELECT id FROM custom_key_stores WHERE connection_state IN ('CONNECTING', 'DISCONNECTING') AND ${ownerGone('connection_owner')}`)
      .pluck()
      .all(this.instanceId) as string[];
  }

  override close(): void {
    void this.link.close();
    super.close();
  }
}

/**
 * SQL for "the daemon instance named in this column is gone" (one `?`: this instance's id): no
 * owner, or another owner whose instance lock is free (its process or its database connection
 * ended). pg_try_advisory_xact_lock takes the lock only for this statement.
 */
const ownerGone = (column: string) =>
  `(${column} IS NULL OR (${column} <> ? AND pg_try_advisory_xact_lock(${INSTANCE_LOCK_NS}, hashtext(${column}))))`;

/**
 * Adds session settings to the URL's `options`: the instance id (rows default to their writer)
 * and, for a further region, the search_path. Later settings win over the operator's.
 */
function withSessionOptions(url: string, options: string): string {
  const u = new URL(url);
  const previous = u.searchParams.get('options');
  u.searchParams.set('options', previous ? `${previous} ${options}` : options);
  return u.toString();
}
