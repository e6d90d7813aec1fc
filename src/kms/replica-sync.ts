import type { KmsDeps } from './context.js';
import { syncLocalReplicas } from './multi-region.js';
import { pushToPeers } from './peer-push.js';

/**
 * Copies the primary's shared properties to every local replica: material versions, material
 * history, the current version, and the automatic-rotation settings (a replica never rotates
 * by itself: rotation.ts skips replicas). Called after every change of a shared property on
 * the primary. A replica in a region sharing the token names the same token objects; a replica
 * in a region with its own token receives each missing version wrapped (transferMaterial).
 * A replica that cannot be brought up to date (its token unreachable, no trusted peer key)
 * keeps what it had and is retried at the primary region's next scheduler tick (syncAll).
 */
export async function syncReplicas(primary: KmsDeps, keyId: string): Promise<void> {
  await syncLocalReplicas(primary, keyId);
  // Replicas at peer sites (two sites): the replication protocol.
  await pushToPeers(primary, keyId);
}

/** syncReplicas after a change on the primary that already succeeded: a replica that lags is retried by syncAll. */
export async function syncReplicasLater(primary: KmsDeps, keyId: string): Promise<void> {
  try {
    await syncReplicas(primary, keyId);
  } catch (e) {
    primary.log.warn({ keyId, err: (e as Error).message }, 'multi-Region replicas not brought up to date; will retry');
  }
}

/** The scheduler's retry: every primary of this region, brought to its replicas again. */
export async function syncAll(primary: KmsDeps): Promise<{ done: number; failed: number }> {
  const result = { done: 0, failed: 0 };
  for (const keyId of primary.store.multiRegion.primariesIn(primary.region)) {
    try {
      await syncReplicas(primary, keyId);
      result.done++;
    } catch (e) {
      result.failed++;
      primary.log.warn({ keyId, err: (e as Error).message }, 'multi-Region replicas not brought up to date; will retry');
    }
  }
  return result;
}

