import type { KmsDeps } from './context.js';
import { LABEL_PREFIX } from './material.js';

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

/**
 * Start-up reconciliation of the metadata store with the token, so that a crash between
 * "token object created" and "row committed" leaves neither an orphan object nor a row that
 * points at nothing. A pending row means the client never got a success answer, so the work
 * is rolled back rather than forward.
 */
export async function reconcile(deps: KmsDeps): Promise<ReconcileReport> {
  const report: ReconcileReport = { pendingRemoved: 0, keysRemoved: 0, orphansDestroyed: 0, missingObjects: 0 };
  for (const m of deps.store.listPendingMaterials()) {
    await deps.token.destroy(m.objectId);
    deps.store.deleteMaterial(m.keyId, m.version);
    report.pendingRemoved++;
    const key = deps.store.getKey(m.keyId);
    if (key?.state === 'Creating' && deps.store.listMaterials(m.keyId).length === 0) {
      deps.store.deleteKey(m.keyId);
      report.keysRemoved++;
    }
  }
  const known = deps.store.allObjectIds();
  const present = new Set<string>();
  for (const obj of await deps.token.listObjects(LABEL_PREFIX)) {
    const id = obj.id.toString('hex');
    if (!known.has(id) && !present.has(id)) {
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
