import { randomBytes } from 'node:crypto';
import type { KeyMaterialRecord, KeyRecord } from '../store/types.js';
import { keyIdToBytes } from './ciphertext.js';
import type { KmsDeps } from './context.js';
import { generateAsymmetricMaterial } from './key-specs.js';
import { tokenFor } from './token-for.js';

/** Every token object the daemon creates carries a label with this prefix. */
export const LABEL_PREFIX = 'p11kms:';

/** CKA_ID of a key-material version: the key id's 16 bytes and the u32 version. */
export function objectIdFor(keyId: string, version: number): Buffer {
  const id = Buffer.allocUnsafe(20);
  keyIdToBytes(keyId).copy(id, 0);
  id.writeUInt32BE(version, 16);
  return id;
}

export function newMaterial(keyId: string, version: number, now: number): KeyMaterialRecord {
  return {
    keyId,
    version,
    materialId: randomBytes(32).toString('hex'),
    objectId: objectIdFor(keyId, version),
    state: 'pending',
    createdAt: now,
  };
}

/**
 * Generates the token object for a version row that is already written as 'pending', then
 * marks it active. Order: row (pending) → token object → row (active). A crash in between
 * leaves a pending row, which start-up reconciliation resolves (see reconcile.ts).
 */
export async function materialize(deps: KmsDeps, key: KeyRecord, m: KeyMaterialRecord, keyState?: KeyRecord['state']) {
  try {
    const label = `${LABEL_PREFIX}${key.keyId}:v${m.version}`;
    if (key.keySpec === 'SYMMETRIC_DEFAULT') await tokenFor(deps, key).generateAesKey(m.objectId, label, materialWrappable(deps, key));
    else await generateAsymmetricMaterial(deps, key, m.objectId, label);
  } catch (e) {
    deps.store.deleteMaterial(m.keyId, m.version);
    throw e;
  }
  deps.store.activateMaterial(m.keyId, m.version, keyState);
}

/** Whether the key's material is made wrappable by a trusted peer key (Multi-Region keys, multi-region.ts). */
export const materialWrappable = (deps: KmsDeps, key: KeyRecord): boolean => deps.store.multiRegion.get(key.keyId)?.wrappable === true;

/** The active material of a version, or KeyUnavailable when the row is missing. */
export function materialOf(deps: KmsDeps, key: KeyRecord, version: number): KeyMaterialRecord | undefined {
  const m = deps.store.getMaterial(key.keyId, version);
  return m && m.state === 'active' ? m : undefined;
}
