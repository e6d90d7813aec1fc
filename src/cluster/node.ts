import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { TokenSealer } from '../audit/sealer.js';
import type { CredentialRegistry } from '../authz/credentials.js';
import type { Token } from '../hsm/token.js';
import type { Config } from '../config.js';
import type { KmsDeps } from '../kms/context.js';
import { reconcile } from '../kms/reconcile.js';
import type { LifecycleScheduler } from '../kms/scheduler.js';
import type { Logger } from '../log.js';
import { PgStore } from '../store/pg/store.js';
import { SqliteStore } from '../store/sqlite.js';
import type { MetadataStore, StoreChange } from '../store/types.js';

/**
 * What a daemon does differently when it shares its store with other daemons (README, "High
 * availability"): the store is PostgreSQL; background jobs run on the leader only; changes
 * other nodes make to credentials reach this node's registry.
 */

/** SQLite in the data directory, or PostgreSQL when a database URL is configured. */
export async function openMetadataStore(config: Config, log: Logger): Promise<MetadataStore> {
  if (!config.database) return new SqliteStore(join(config.dataDir, 'metadata.sqlite'));
  const store = await PgStore.open({
    url: config.database.url.reveal(), nodeId: config.database.nodeId, log, queryTimeoutMs: config.database.queryTimeoutMs,
  });
  log.info({ node: config.database.nodeId, instance: store.instanceId }, 'metadata store: PostgreSQL (shared by every node)');
  return store;
}

/**
 * The store of a further region (issue 13): with SQLite its own file under
 * dataDir/regions/<region>; with PostgreSQL the region's own schema of the same database
 * (store/pg/migrations.ts, storeSchema), shared by every node like the default region's store,
 * and led by the default region's leader (`main`).
 */
export async function openRegionStore(config: Config, region: string, main: MetadataStore, log: Logger): Promise<MetadataStore> {
  const file = join(config.dataDir, 'regions', region, 'metadata.sqlite');
  if (!config.database || !main.shared) {
    mkdirSync(join(config.dataDir, 'regions', region), { recursive: true, mode: 0o700 });
    return new SqliteStore(file);
  }
  // Earlier versions kept a further region in a per-node file even with a database: its keys are not in the schema.
  if (existsSync(file)) log.warn({ file }, 'a SQLite file of this region is left from an earlier version; it is not used (its keys are not in the database)');
  const store = await PgStore.open({
    url: config.database.url.reveal(), nodeId: config.database.nodeId, log, queryTimeoutMs: config.database.queryTimeoutMs,
    region, leader: main.shared,
  });
  log.info({ node: config.database.nodeId, instance: store.instanceId }, 'region metadata store: PostgreSQL, its own schema');
  return store;
}

/**
 * The audit sealer. Nodes sharing a token share its audit seal key (made once: under the cluster
 * lock, so two nodes starting together do not both create one) and keep one chain head each.
 */
export async function openSealer(store: MetadataStore, token: Token, nodeId: string | undefined): Promise<TokenSealer> {
  const unlock = await store.shared?.lockKey('p11kms-audit-seal-key');
  try {
    return await TokenSealer.open(token, true, nodeId);
  } finally {
    await unlock?.();
  }
}

/** How often a follower tries to take the leader lock: the failover bound after the leader's connection ends. */
export const LEADER_RETRY_MS = 500;
/** How often the leader reconciles what dead instances left pending, and trims the change log. */
const HOUSEKEEPING_MS = 30_000;

export interface Leadership {
  stop(): Promise<void>;
}

/** A further region's deps and scheduler: its jobs run on the default region's leader only. */
export interface LedRegion {
  deps: KmsDeps;
  scheduler: LifecycleScheduler;
}

/**
 * Leader election for background jobs. Every LEADER_RETRY_MS each node tries the leader lock
 * (pg_try_advisory_lock on its cluster link); PostgreSQL frees it when the leader's connection
 * ends, so a killed leader is replaced within LEADER_RETRY_MS plus the time PostgreSQL needs to
 * see the connection gone (at once for a killed process on a reachable host; TCP keepalive
 * otherwise). A new leader runs one scheduler tick at once, which catches up on what fell due.
 * The further regions' stores follow this leadership (their schedulers run while this node
 * leads); a new leader runs their catch-up ticks and housekeeping too.
 */
export async function startLeadership(
  deps: KmsDeps, scheduler: LifecycleScheduler, log: Logger, regions: readonly LedRegion[] = [],
): Promise<Leadership | undefined> {
  const shared = deps.store.shared;
  if (!shared) return undefined;
  let leading = false;
  let lastHousekeeping = 0;
  let running: Promise<void> = Promise.resolve();
  const step = async () => {
    const now = await shared.tryLead();
    // The regions' links follow (and, while leading, trim their own change logs).
    for (const r of regions) await r.deps.store.shared?.tryLead();
    if (now && !leading) {
      leading = true;
      await scheduler.runOnce();
      for (const r of regions) await r.scheduler.runOnce();
    } else if (!now) {
      leading = false;
    }
    // A custom key store left CONNECTING or DISCONNECTING by a node that died is finished here, once.
    if (leading) await deps.keyStores?.finishAbandoned();
    if (leading && Date.now() - lastHousekeeping > HOUSEKEEPING_MS) {
      lastHousekeeping = Date.now();
      for (const d of [deps, ...regions.map((r) => r.deps)]) {
        const report = await reconcile(d);
        if (report.pendingRemoved || report.orphansDestroyed) log.info({ region: d.region, ...report }, 'leader reconciled what other instances left');
      }
    }
  };
  // The first attempt before serving, as the single-node daemon runs its catch-up tick then.
  await step().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'leadership step failed'));
  const timer = setInterval(() => {
    running = running.then(step).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'leadership step failed'));
  }, LEADER_RETRY_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

/** Reloads the credential registry when another node changed credentials or identity policies. */
export function followCredentialChanges(store: MetadataStore, credentials: CredentialRegistry, log: Logger): void {
  const shared = store.shared;
  if (!shared) return;
  let queued: Promise<void> | undefined;
  let again = false;
  const reload = () => {
    if (queued) {
      again = true;
      return;
    }
    queued = (async () => {
      do {
        again = false;
        await credentials.reload().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'credential reload failed'));
      } while (again);
    })().finally(() => {
      queued = undefined;
    });
  };
  shared.onChange((c: StoreChange) => {
    if (c.entity === 'credentials' || c.entity === 'identity_policies' || c.entity === '*') reload();
  });
}
