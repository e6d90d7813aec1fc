import { recordKeyServiceEvent, type JobResult } from '../audit/service-event.js';
import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { Errors, type KmsError } from '../errors.js';
import type { MaterialInfo, RotationType } from '../store/lifecycle.js';
import type { KeyMaterialRecord, KeyRecord, MetadataStore } from '../store/types.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { resolveKey } from './key-ref.js';
import { isKeyLocked, withKeyLock } from './key-locks.js';
import { supportsRotation } from './key-specs.js';
import { checkKeyState, type KeyStateAction } from './key-states.js';
import { LABEL_PREFIX, materialWrappable, newMaterial } from './material.js';
import { int, KEY_ID, LIMIT, MARKER, oneOf } from './validation.js';
import { tokenFor } from './token-for.js';
import { isReplica, viewOf } from './multi-region.js';
import { syncReplicasLater } from './replica-sync.js';

/**
 * Key rotation: every rotation is a new key-material version, i.e. a new non-extractable AES
 * object in the token and a new row, written in the same order as CreateKey's (row 'pending' →
 * token object → row 'active' with keys.current_version bumped, in one transaction). New
 * encryptions use the current version; a ciphertext names its version, so older material keeps
 * decrypting until the key is deleted. Automatic rotation runs in the scheduler (scheduler.ts).
 */

export const DEFAULT_ROTATION_PERIOD_DAYS = 365;
/** AWS's per-key quota of on-demand rotations (API reference, RotateKeyOnDemand; it was 10 before 2025). */
export const MAX_ON_DEMAND_ROTATIONS = 25;
export const DAY_MS = 86_400_000;
/** RotateKeyOnDemand is refused while an automatic rotation is due within this window (ConflictException). */
const CONFLICT_WINDOW_MS = 20 * 60_000;

const CUSTOM_KEY_STORE_ORIGINS = new Set(['AWS_CLOUDHSM', 'EXTERNAL_KEY_STORE']);

/**
 * Why a key cannot be rotated in this way, as AWS refuses it in any key state: asymmetric and
 * HMAC keys, keys in custom key stores, and (automatically) keys with imported key material.
 * Imported keys rotate on demand only, into material imported beforehand (PENDING_ROTATION).
 */
export function rotationRefusal(key: KeyRecord, kind: 'automatic' | 'on-demand' | 'list'): KmsError | undefined {
  if (!supportsRotation(key) || key.keyUsage !== 'ENCRYPT_DECRYPT') {
    return Errors.unsupported(`${key.arn} key spec ${key.keySpec} is not valid for this operation.`);
  }
  if (CUSTOM_KEY_STORE_ORIGINS.has(key.origin)) {
    return Errors.unsupported(`${key.arn} origin is ${key.origin} which is not valid for this operation.`);
  }
  if (kind === 'automatic' && key.origin !== 'AWS_KMS') {
    return Errors.unsupported(`${key.arn} origin is ${key.origin} which is not valid for this operation.`);
  }
  if (key.keyManager !== 'CUSTOMER' && kind !== 'list') {
    return Errors.unsupported(`${key.arn} is an AWS managed key; its rotation cannot be changed.`);
  }
  return undefined;
}

/**
 * The common start of the rotation operations, in AWS's order: resolve the key (id or ARN, no
 * alias), authorize, refuse keys that cannot rotate this way, check the key state. RotateKeyOnDemand
 * checks the state before the key's type: AWS answers DisabledException for a disabled key of any
 * spec or origin there (issue #12), while the automatic-rotation settings refuse the type first.
 */
function rotationKey(
  deps: KmsDeps,
  ctx: RequestContext,
  ref: string,
  action: KeyStateAction,
  kind: 'automatic' | 'on-demand' | 'list',
): KeyRecord {
  const key = resolveKey(deps, ctx, ref, false);
  authorize(ctx, action, key);
  if (kind === 'on-demand') checkKeyState(key, action);
  const refusal = rotationRefusal(key, kind);
  if (refusal) throw refusal;
  // Rotation is a shared property of a Multi-Region key, set and run on its primary only.
  if (kind !== 'list' && isReplica(deps, key)) {
    throw Errors.unsupported(`${key.arn} is a multi-Region replica key; rotation is managed on its primary key (in ${viewOf(deps, key.keyId)?.primaryRegion}).`);
  }
  if (kind !== 'on-demand') checkKeyState(key, action);
  return key;
}

/** On-demand or automatic rotations running now, by store and key: GetKeyRotationStatus reports them. */
const running = new WeakMap<MetadataStore, Map<string, { type: RotationType; startedAt: number }>>();
function runningFor(store: MetadataStore) {
  let m = running.get(store);
  if (!m) {
    m = new Map();
    running.set(store, m);
  }
  return m;
}

/** The imported version waiting for RotateKeyOnDemand, if any. */
export function pendingRotationOf(deps: KmsDeps, keyId: string): MaterialInfo | undefined {
  return deps.store.lifecycle.listMaterialInfo(keyId).find((i) => i.pendingRotation && i.importState === 'IMPORTED');
}

/** The next version number for a key: above every version a row or the history has used. */
export function nextVersion(deps: KmsDeps, keyId: string): number {
  let max = 0;
  for (const m of deps.store.listMaterials(keyId)) max = Math.max(max, m.version);
  for (const i of deps.store.lifecycle.listMaterialInfo(keyId)) max = Math.max(max, i.version);
  return max + 1;
}

/**
 * Rotates a key now. Call it under the key's lock (withKeyLock); it re-reads the key and
 * returns undefined (doing nothing) when the key changed so that it must not rotate.
 */
async function rotateKey(deps: KmsDeps, keyId: string, type: RotationType): Promise<KeyMaterialRecord | undefined> {
  const key = deps.store.getKey(keyId);
  if (!key || key.state !== 'Enabled' || rotationRefusal(key, type === 'AUTOMATIC' ? 'automatic' : 'on-demand') || isReplica(deps, key)) {
    return undefined;
  }
  const now = deps.clock.now().getTime();
  const { store } = deps;
  if (key.origin === 'EXTERNAL') {
    const pending = pendingRotationOf(deps, keyId);
    if (!pending) return undefined;
    store.transaction(() => {
      store.updateKey(keyId, { currentVersion: pending.version });
      store.lifecycle.putMaterialInfo({ ...pending, pendingRotation: false, rotationType: type, rotatedAt: now });
    });
    await syncReplicasLater(deps, keyId);
    return store.getMaterial(keyId, pending.version);
  }
  const m = newMaterial(keyId, nextVersion(deps, keyId), now);
  store.addPendingMaterial(m);
  try {
    await tokenFor(deps, key).generateAesKey(m.objectId, `${LABEL_PREFIX}${keyId}:v${m.version}`, materialWrappable(deps, key));
  } catch (e) {
    store.deleteMaterial(keyId, m.version);
    throw e;
  }
  store.transaction(() => {
    store.activateMaterial(keyId, m.version);
    store.updateKey(keyId, { currentVersion: m.version });
    store.lifecycle.putMaterialInfo({
      keyId, version: m.version, materialId: m.materialId, createdAt: now, rotationType: type, rotatedAt: now,
      imported: false, pendingRotation: false,
    });
    if (type === 'AUTOMATIC') {
      const r = store.lifecycle.getRotation(keyId);
      // Catch-up after downtime rotates once and restarts the schedule from now: never a burst.
      if (r?.enabled) store.lifecycle.putRotation({ ...r, anchorAt: now, nextRotationAt: now + r.periodDays * DAY_MS });
    }
  });
  deps.log.info({ keyId, version: m.version, rotationType: type }, 'key material rotated');
  // A Multi-Region primary's new version reaches its replicas (the same token objects).
  await syncReplicasLater(deps, keyId);
  return store.getMaterial(keyId, m.version);
}

async function rotateTracked(deps: KmsDeps, keyId: string, type: RotationType) {
  const inFlight = runningFor(deps.store);
  inFlight.set(keyId, { type, startedAt: deps.clock.now().getTime() });
  try {
    return await withKeyLock(deps.store, keyId, () => rotateKey(deps, keyId, type));
  } finally {
    inFlight.delete(keyId);
  }
}

/** Runs the automatic rotations that are due (scheduler.ts), each audited as RotateKey. */
export async function runDueRotations(deps: KmsDeps, now: number, limit: number): Promise<JobResult> {
  const result: JobResult = { done: 0, failed: 0 };
  for (const r of deps.store.lifecycle.dueRotations(now, limit)) {
    try {
      const material = await rotateTracked(deps, r.keyId, 'AUTOMATIC');
      const key = material && deps.store.getKey(r.keyId);
      if (key) {
        result.done++;
        await recordKeyServiceEvent(deps, 'RotateKey', key, { keyMaterialId: material.materialId, rotationType: 'AUTOMATIC' });
      }
    } catch (e) {
      result.failed++;
      deps.log.warn({ keyId: r.keyId, err: (e as Error).message }, 'automatic rotation failed; will retry');
    }
  }
  return result;
}

const KeyOnly = z.object({ KeyId: KEY_ID });

export const EnableKeyRotation = operation(
  z.object({ KeyId: KEY_ID, RotationPeriodInDays: int(90, 2560).optional() }),
  async (deps, ctx, input) => {
    const key = rotationKey(deps, ctx, input.KeyId, 'EnableKeyRotation', 'automatic');
    const periodDays = input.RotationPeriodInDays ?? DEFAULT_ROTATION_PERIOD_DAYS;
    const current = deps.store.lifecycle.getRotation(key.keyId);
    // Enabling starts the period now; changing the period of an enabled key keeps its anchor.
    const anchorAt = current?.enabled ? current.anchorAt : deps.clock.now().getTime();
    deps.store.lifecycle.putRotation({
      keyId: key.keyId, enabled: true, periodDays, anchorAt, nextRotationAt: anchorAt + periodDays * DAY_MS,
    });
    await syncReplicasLater(deps, key.keyId);
    return {};
  },
);

export const DisableKeyRotation = operation(KeyOnly, async (deps, ctx, input) => {
  const key = rotationKey(deps, ctx, input.KeyId, 'DisableKeyRotation', 'automatic');
  const current = deps.store.lifecycle.getRotation(key.keyId);
  if (current?.enabled) deps.store.lifecycle.putRotation({ ...current, enabled: false, nextRotationAt: undefined });
  await syncReplicasLater(deps, key.keyId);
  return {};
});

export const GetKeyRotationStatus = operation(KeyOnly, (deps, ctx, input) => {
  const key = resolveKey(deps, ctx, input.KeyId, false);
  authorize(ctx, 'GetKeyRotationStatus', key);
  checkKeyState(key, 'GetKeyRotationStatus');
  const r = deps.store.lifecycle.getRotation(key.keyId);
  // Keys that cannot rotate automatically report false; a key pending deletion reports false
  // and gets its status back if the deletion is cancelled.
  const enabled = !rotationRefusal(key, 'automatic') && r?.enabled === true && key.state !== 'PendingDeletion';
  const onDemand = runningFor(deps.store).get(key.keyId);
  return {
    KeyRotationEnabled: enabled,
    KeyId: key.keyId,
    RotationPeriodInDays: enabled ? r?.periodDays : undefined,
    NextRotationDate: enabled && r?.nextRotationAt !== undefined ? new Date(r.nextRotationAt) : undefined,
    OnDemandRotationStartDate: onDemand?.type === 'ON_DEMAND' ? new Date(onDemand.startedAt) : undefined,
  };
});

export const RotateKeyOnDemand = operation(KeyOnly, async (deps, ctx, input) => {
  const key = rotationKey(deps, ctx, input.KeyId, 'RotateKeyOnDemand', 'on-demand');
  if (key.origin === 'EXTERNAL' && !pendingRotationOf(deps, key.keyId)) {
    throw Errors.invalidState(
      `${key.arn} has no imported key material pending rotation. Import new key material (ImportType NEW_KEY_MATERIAL) first.`,
    );
  }
  if (deps.store.lifecycle.countRotations(key.keyId, 'ON_DEMAND') >= MAX_ON_DEMAND_ROTATIONS) {
    throw Errors.limitExceeded(
      `${key.arn} has reached the limit of ${MAX_ON_DEMAND_ROTATIONS} on-demand rotations per KMS key.`,
    );
  }
  const r = deps.store.lifecycle.getRotation(key.keyId);
  const now = deps.clock.now().getTime();
  const automaticSoon = r?.enabled === true && r.nextRotationAt !== undefined && r.nextRotationAt - now <= CONFLICT_WINDOW_MS;
  if (runningFor(deps.store).has(key.keyId) || isKeyLocked(deps.store, key.keyId) || automaticSoon) {
    throw Errors.conflict(
      `A rotation of ${key.arn} is in progress or an automatic rotation is scheduled within 20 minutes. Try again later.`,
    );
  }
  const rotated = await rotateTracked(deps, key.keyId, 'ON_DEMAND');
  if (!rotated) throw Errors.conflict(`${key.arn} changed while it was being rotated. Try again.`);
  return { KeyId: key.keyId };
});

/** Rotations are listed by version; the marker is the last listed version, opaque to callers. */
function decodeMarker(marker: string | undefined): number {
  if (marker === undefined) return 0;
  const m = /^v([1-9]\d{0,9})$/.exec(Buffer.from(marker, 'base64url').toString('utf8'));
  if (!m || Buffer.from(`v${m[1]}`).toString('base64url') !== marker) {
    throw Errors.invalidMarker('The request contains an invalid marker.');
  }
  return Number(m[1]);
}

export const ListKeyRotations = operation(
  z.object({
    KeyId: KEY_ID,
    IncludeKeyMaterial: oneOf(['ALL_KEY_MATERIAL', 'ROTATIONS_ONLY']).optional(),
    Limit: LIMIT,
    Marker: MARKER,
  }),
  (deps, ctx, input) => {
    const key = rotationKey(deps, ctx, input.KeyId, 'ListKeyRotations', 'list');
    const after = decodeMarker(input.Marker);
    const all = input.IncludeKeyMaterial === 'ALL_KEY_MATERIAL';
    const info = new Map(deps.store.lifecycle.listMaterialInfo(key.keyId).map((i) => [i.version, i]));
    const rows = new Map(deps.store.listMaterials(key.keyId).filter((m) => m.state === 'active').map((m) => [m.version, m]));
    const versions = [...new Set([...info.keys(), ...rows.keys()])].sort((a, b) => a - b);
    const entries = [];
    for (const version of versions) {
      const i = info.get(version);
      const materialId = i?.materialId ?? rows.get(version)?.materialId;
      if (materialId === undefined) continue;
      const rotation = i?.rotationType !== undefined;
      if (!rotation && !all) continue;
      entries.push({
        version,
        entry: {
          KeyId: key.keyId,
          KeyMaterialId: materialId,
          KeyMaterialDescription: i?.description,
          ImportState: i?.imported ? i.importState : undefined,
          KeyMaterialState: version === key.currentVersion ? 'CURRENT' : i?.pendingRotation ? 'PENDING_ROTATION' : 'NON_CURRENT',
          ExpirationModel: i?.imported ? i.expirationModel : undefined,
          ValidTo: i?.imported && i.validTo !== undefined ? new Date(i.validTo) : undefined,
          RotationDate: i?.rotatedAt !== undefined ? new Date(i.rotatedAt) : undefined,
          RotationType: i?.rotationType,
        },
      });
    }
    const remaining = entries.filter((e) => e.version > after);
    const limit = input.Limit ?? 100;
    const page = remaining.slice(0, limit);
    const truncated = remaining.length > limit;
    const last = page[page.length - 1];
    return {
      Rotations: page.map((e) => e.entry),
      NextMarker: truncated && last ? Buffer.from(`v${last.version}`).toString('base64url') : undefined,
      Truncated: truncated,
    };
  },
);
