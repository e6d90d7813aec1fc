import { recordKeyServiceEvent, type JobResult } from '../audit/service-event.js';
import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { operation, type KmsDeps } from './context.js';
import { IMPORT_LABEL_PREFIX, importedMaterialComplete } from './import.js';
import { resolveKey } from './key-ref.js';
import { withKeyLock } from './key-locks.js';
import { checkKeyState } from './key-states.js';
import { LABEL_PREFIX } from './material.js';
import { afterCopyDeleted, objectIdsOfOtherCopies, viewOf } from './multi-region.js';
import { DAY_MS } from './rotation.js';
import { int, KEY_ID } from './validation.js';

/**
 * Scheduled key deletion. ScheduleKeyDeletion only marks the key PendingDeletion with a date;
 * the scheduler (scheduler.ts) deletes it once the date has passed: every token object of the
 * key first (all material versions, and wrapping keys of outstanding imports), then, in one
 * transaction, the key row with everything that references it and a tombstone in key_deletions.
 * A failure part-way leaves the key PendingDeletion and the next tick tries again (destroying
 * an object that is already gone is a no-op).
 */

export const DEFAULT_PENDING_WINDOW_DAYS = 30;

export const ScheduleKeyDeletion = operation(
  z.object({ KeyId: KEY_ID, PendingWindowInDays: int(7, 30).optional() }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'ScheduleKeyDeletion', key);
    checkKeyState(key, 'ScheduleKeyDeletion');
    const days = input.PendingWindowInDays ?? DEFAULT_PENDING_WINDOW_DAYS;
    // AWS: a Multi-Region primary with replicas waits in PendingReplicaDeletion; its waiting
    // period begins when the last replica is deleted (multi-region.ts, afterCopyDeleted).
    const view = viewOf(deps, key.keyId);
    if (view && view.primaryRegion === deps.region && view.replicaRegions.length > 0) {
      deps.store.transaction(() => {
        deps.store.updateKey(key.keyId, { state: 'PendingReplicaDeletion', deletionDate: undefined });
        deps.store.multiRegion.put({ ...view, pendingWindowDays: days });
      });
      deps.log.info({ keyId: key.keyId, replicas: view.replicaRegions }, 'primary key deletion scheduled; waiting for its replicas');
      return { KeyId: key.arn, KeyState: 'PendingReplicaDeletion', PendingWindowInDays: days };
    }
    const deletionDate = deps.clock.now().getTime() + days * DAY_MS;
    deps.store.updateKey(key.keyId, { state: 'PendingDeletion', deletionDate });
    deps.log.info({ keyId: key.keyId, deletionDate: new Date(deletionDate).toISOString() }, 'key deletion scheduled');
    return { KeyId: key.arn, DeletionDate: new Date(deletionDate), KeyState: 'PendingDeletion', PendingWindowInDays: days };
  },
);

export const CancelKeyDeletion = operation(z.object({ KeyId: KEY_ID }), (deps, ctx, input) => {
  const key = resolveKey(deps, ctx, input.KeyId, false);
  authorize(ctx, 'CancelKeyDeletion', key);
  checkKeyState(key, 'CancelKeyDeletion');
  // AWS: a cancelled key is Disabled. A key whose imported material is missing cannot be, so
  // it returns to PendingImport.
  const state = key.origin === 'EXTERNAL' && !importedMaterialComplete(deps, key.keyId) ? 'PendingImport' : 'Disabled';
  deps.store.transaction(() => {
    deps.store.updateKey(key.keyId, { state, deletionDate: undefined });
    const view = viewOf(deps, key.keyId);
    if (view?.pendingWindowDays !== undefined) deps.store.multiRegion.put({ ...view, pendingWindowDays: undefined });
  });
  deps.log.info({ keyId: key.keyId, state }, 'key deletion cancelled');
  return { KeyId: key.arn };
});

/**
 * Deletes a key whose deletion date has passed. Returns false (doing nothing) when the key is
 * no longer due: deleted already, or its deletion was cancelled.
 */
export async function deleteKeyNow(deps: KmsDeps, keyId: string): Promise<boolean> {
  return withKeyLock(deps.store, keyId, async () => {
    const { store } = deps;
    const key = store.getKey(keyId);
    const now = deps.clock.now().getTime();
    if (!key || key.state !== 'PendingDeletion' || key.deletionDate === undefined || key.deletionDate > now) return false;
    // A key in a custom key store that is not connected is deleted all the same; as in AWS, its
    // material stays in the token (orphaned) and is destroyed when the store connects again
    // (reconcileKeyStore recognises it by the deletion record written below).
    const token = key.customKeyStoreId !== undefined ? deps.keyStores?.connectedToken(key.customKeyStoreId) : deps.token;
    let destroyed = 0;
    if (token) {
      // Every object of the key: the rows name them; the label scan also finds any the rows lost.
      // A Multi-Region copy in another region sharing the token still names the shared objects
      // (and has import objects under the same labels): then only this copy's own rows count.
      const ids = new Map<string, Buffer>();
      const otherCopies = objectIdsOfOtherCopies(deps, keyId);
      const shared = otherCopies.size > 0 || (deps.regions?.sharingToken(deps) ?? []).some((d) => d.store.getKey(keyId));
      for (const m of store.listMaterials(keyId)) ids.set(m.objectId.toString('hex'), m.objectId);
      for (const t of store.lifecycle.listImportTokens(keyId)) ids.set(t.tokenId.toString('hex'), t.tokenId);
      for (const prefix of shared ? [] : [`${LABEL_PREFIX}${keyId}:`, `${IMPORT_LABEL_PREFIX}${keyId}`]) {
        for (const o of await token.listObjects(prefix)) ids.set(o.id.toString('hex'), o.id);
      }
      for (const [hex, id] of ids) if (!otherCopies.has(hex)) destroyed += await token.destroy(id);
    } else {
      deps.log.warn(
        { keyId, customKeyStoreId: key.customKeyStoreId },
        'key in a disconnected custom key store deleted; its key material stays in the token until the store connects',
      );
    }
    const view = viewOf(deps, keyId);
    store.transaction(() => {
      // Aliases, tags, grants, versions, rotation settings, material history and import tokens
      // reference keys(key_id) ON DELETE CASCADE, so deleting the key row removes them all.
      store.deleteKey(keyId);
      store.lifecycle.recordDeletion({
        keyId, arn: key.arn, accountId: key.accountId, origin: key.origin, scheduledFor: key.deletionDate as number,
        deletedAt: now, objectsDestroyed: destroyed,
      });
    });
    await afterCopyDeleted(deps, key, view);
    deps.log.info(
      { event: 'KeyDeleted', keyId, arn: key.arn, objectsDestroyed: destroyed, scheduledFor: new Date(key.deletionDate as number).toISOString() },
      'key deleted: token objects destroyed, aliases and metadata removed',
    );
    return true;
  });
}

/** Deletes the keys whose deletion date has passed (scheduler.ts), each audited as DeleteKey. */
export async function runDueDeletions(deps: KmsDeps, now: number, limit: number): Promise<JobResult> {
  const result: JobResult = { done: 0, failed: 0 };
  for (const keyId of deps.store.lifecycle.dueDeletions(now, limit)) {
    try {
      const key = deps.store.getKey(keyId);
      if (key && (await deleteKeyNow(deps, keyId))) {
        result.done++;
        await recordKeyServiceEvent(deps, 'DeleteKey', key, { customKeyStoreId: key.customKeyStoreId });
      }
    } catch (e) {
      result.failed++;
      deps.log.warn({ keyId, err: (e as Error).message }, 'scheduled key deletion failed; will retry');
    }
  }
  return result;
}
