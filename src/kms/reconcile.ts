import type { Token } from '../hsm/token.js';
import type { KmsDeps } from './context.js';
import { LABEL_PREFIX } from './material.js';
import { objectIdsSharingToken } from './regions.js';

export interface ReconcileReport {
  /** Pending version rows resolved (their token objects, if any, destroyed). */
  pendingRemoved: number;
  /** Keys that never finished CreateKey, removed with their rows. */
  keysRemoved: number;
  /** Key-material versions (CKA_IDs) with token objects but no row, destroyed (a key pair counts once). */
  orphansDestroyed: number;
  /** Active rows whose token object is missing (reported; their keys answer KeyUnavailableException). */
  missingObjects: number;
}

export interface KeyStoreReconcileReport extends ReconcileReport {
  /** `p11kms:` objects that belong to no key this daemon knows of: reported, left alone. */
  foreignObjects: number;
}

/**
 * Start-up reconciliation of the metadata store with the token, so that a crash between
 * "token object created" and "row committed" leaves neither an orphan object nor a row that
 * points at nothing. A pending row means the client never got a success answer, so the work
 * is rolled back rather than forward. This is the default token: keys of custom key stores are
 * reconciled with their own token when the store connects (reconcileKeyStore).
 */
export async function reconcile(deps: KmsDeps): Promise<ReconcileReport> {
  const report = await resolvePending(deps, deps.token, null);
  // The token first, the rows second: another daemon sharing the store writes a row before its
  // object, so every object listed here already has its row when the rows are read.
  const objects = await deps.token.listObjects(LABEL_PREFIX);
  const known = deps.store.objectIdsIn(null);
  // An id that any row names (a custom key store's key too, or a key of another region that
  // shares this token) is never destroyed here.
  const named = objectIdsSharingToken(deps);
  const present = new Set<string>();
  for (const obj of objects) {
    const id = obj.id.toString('hex');
    if (!named.has(id) && !present.has(id)) {
      await deps.token.destroy(obj.id);
      report.orphansDestroyed++;
    }
    present.add(id);
  }
  for (const id of known) {
    if (!present.has(id)) report.missingObjects++;
  }
  if (report.missingObjects) {
    deps.log.error({ missingObjects: report.missingObjects }, 'key material rows without a token object');
  }
  return report;
}

/**
 * The same for one custom key store, each time it connects. Its token may have been restored
 * from a backup or shared with another installation, so an object without a row is destroyed
 * only when it provably belongs to this daemon: its label names a key of this store, or a key
 * this daemon deleted while the store was disconnected (AWS leaves such material orphaned in the
 * cluster; reconnecting cleans it up). Anything else is counted and left alone.
 */
export async function reconcileKeyStore(deps: KmsDeps, storeId: string, token: Token): Promise<KeyStoreReconcileReport> {
  const report: KeyStoreReconcileReport = { ...(await resolvePending(deps, token, storeId)), foreignObjects: 0 };
  // The token first, the rows second, as above: every node reconciles the store when it opens
  // its sessions, and another node may be creating a key in the store meanwhile.
  const objects = await token.listObjects(LABEL_PREFIX);
  const known = deps.store.objectIdsIn(storeId);
  const present = new Set<string>();
  for (const obj of objects) {
    const id = obj.id.toString('hex');
    if (!known.has(id) && !present.has(id)) {
      const keyId = obj.label.slice(LABEL_PREFIX.length).split(':')[0] ?? '';
      const key = deps.store.getKey(keyId);
      const ours = key ? key.customKeyStoreId === storeId : deps.store.lifecycle.getDeletion(keyId) !== undefined;
      if (ours) {
        await token.destroy(obj.id);
        report.orphansDestroyed++;
      } else {
        report.foreignObjects++;
      }
    }
    present.add(id);
  }
  for (const id of known) {
    if (!present.has(id)) report.missingObjects++;
  }
  if (report.missingObjects) {
    deps.log.error({ customKeyStoreId: storeId, missingObjects: report.missingObjects }, 'key material rows without a token object');
  }
  return report;
}

/** Rolls back the pending version rows of the keys on one token (null: the default token). */
async function resolvePending(deps: KmsDeps, token: Token, storeId: string | null): Promise<ReconcileReport> {
  const report: ReconcileReport = { pendingRemoved: 0, keysRemoved: 0, orphansDestroyed: 0, missingObjects: 0 };
  for (const m of deps.store.listPendingMaterials()) {
    const owner = deps.store.getKey(m.keyId);
    if ((owner?.customKeyStoreId ?? null) !== storeId) continue;
    await token.destroy(m.objectId);
    deps.store.deleteMaterial(m.keyId, m.version);
    report.pendingRemoved++;
    const key = deps.store.getKey(m.keyId);
    if (key?.state === 'Creating' && deps.store.listMaterials(m.keyId).length === 0) {
      deps.store.deleteKey(m.keyId);
      report.keysRemoved++;
    }
  }
  return report;
}
