import { randomBytes } from 'node:crypto';
import { Errors } from '../errors.js';
import type { MultiRegionRecord } from '../store/multi-region.js';
import type { KeyMaterialRecord, KeyRecord } from '../store/types.js';
import { keyArn } from './arn.js';
import type { KmsDeps, RequestContext } from './context.js';
import { NoTrustedKey, type OaepHash } from '../hsm/token.js';
import { peerKeyId, RECEIVE_LABEL, RECEIVE_MODULUS_BITS, trustedLabel } from '../hsm/peer-keys.js';
import { LABEL_PREFIX } from './material.js';

/**
 * Multi-Region keys (issue 13): the same key id and key material in several regions. Each copy
 * is a key row in its own region's store, with a multi_region_keys row saying where the primary
 * is and which regions hold replicas; every copy keeps the same view (writeView). Shared
 * properties (key spec, usage, origin, material versions, automatic rotation) come from the
 * primary and are copied to the replicas whenever they change (syncReplicas); policy,
 * description, tags, aliases, grants and key state are each copy's own.
 *
 * Regions served by this deployment that share its token share the token objects: a replica's
 * version rows name the primary's CKA_IDs, so an object is destroyed only when no copy names it
 * (regions.ts, deletion.ts). A region with its own token receives the material wrapped (src/hsm).
 */

/** A new `mrk-` id: 16 random bytes whose 7th byte has a high nibble of 0 (ciphertext.ts, keyIdToBytes). */
export function newMultiRegionKeyId(): string {
  const b = randomBytes(16);
  b[6] = (b[6] as number) & 0x0f;
  return `mrk-${b.toString('hex')}`;
}

export function viewOf(deps: KmsDeps, keyId: string): MultiRegionRecord | undefined {
  return deps.store.multiRegion.get(keyId);
}

export const isMultiRegion = (deps: KmsDeps, key: KeyRecord): boolean => viewOf(deps, key.keyId) !== undefined;

export function isReplica(deps: KmsDeps, key: KeyRecord): boolean {
  const v = viewOf(deps, key.keyId);
  return v !== undefined && v.primaryRegion !== deps.region;
}

/** DescribeKey's MultiRegion and MultiRegionConfiguration (and PendingDeletionWindowInDays). */
export function multiRegionMetadata(deps: KmsDeps, key: KeyRecord) {
  const v = viewOf(deps, key.keyId);
  if (!v) return { MultiRegion: false };
  const copy = (region: string) => ({ Arn: keyArn(region, key.accountId, key.keyId), Region: region });
  return {
    MultiRegion: true,
    MultiRegionConfiguration: {
      MultiRegionKeyType: v.primaryRegion === deps.region ? 'PRIMARY' : 'REPLICA',
      PrimaryKey: copy(v.primaryRegion),
      ReplicaKeys: v.replicaRegions.map(copy),
    },
    PendingDeletionWindowInDays: key.state === 'PendingReplicaDeletion' ? v.pendingWindowDays : undefined,
  };
}

/** The copies of a key in the other regions this deployment serves, with their regions' deps. */
export function localCopies(deps: KmsDeps, keyId: string): { deps: KmsDeps; key: KeyRecord }[] {
  const out = [];
  for (const d of deps.regions?.all() ?? []) {
    if (d === deps) continue;
    const key = d.store.getKey(keyId);
    if (key && d.store.multiRegion.get(keyId)) out.push({ deps: d, key });
  }
  return out;
}

/** Writes the same view into every copy this deployment holds (this region's included). */
export function writeView(deps: KmsDeps, view: MultiRegionRecord): void {
  for (const d of [deps, ...localCopies(deps, view.keyId).map((c) => c.deps)]) {
    // The deletion window belongs to the primary's copy only.
    d.store.multiRegion.put({ ...view, pendingWindowDays: d.region === view.primaryRegion ? view.pendingWindowDays : undefined });
  }
}

/** The deps of a region this deployment serves, or UnsupportedOperationException. */
export function servedRegion(deps: KmsDeps, region: string): KmsDeps {
  const target = deps.regions?.get(region);
  if (!target) {
    throw Errors.unsupported(`The Region ${region} is not served by this key store. Regions served: ${deps.regions?.names().join(', ') ?? deps.region}.`);
  }
  return target;
}

/** The request as seen by another region: that region's authorization engine. */
export const inRegion = (ctx: RequestContext, target: KmsDeps): RequestContext => ({ ...ctx, authz: target.authz });

/**
 * Brings the local replicas (other regions of this deployment) of a primary up to date; see
 * replica-sync.ts, which also covers replicas at peer sites.
 */
export async function syncLocalReplicas(primary: KmsDeps, keyId: string): Promise<void> {
  const key = primary.store.getKey(keyId);
  if (!key) return;
  for (const { deps: d, key: replica } of localCopies(primary, keyId)) {
    if (viewOf(d, keyId)?.primaryRegion === d.region) continue;
    await copySharedProperties(primary, key, d, replica);
  }
}

async function copySharedProperties(primary: KmsDeps, key: KeyRecord, d: KmsDeps, replica: KeyRecord): Promise<void> {
  // Imported material is imported into each copy (import.ts); only the current version follows.
  if (key.origin !== 'EXTERNAL') {
    const have = new Set(d.store.listMaterials(key.keyId).filter((m) => m.state === 'active').map((m) => m.version));
    for (const m of primary.store.listMaterials(key.keyId)) {
      // Only active rows: a pending row would be rolled back (its object destroyed) by reconcile.
      if (m.state !== 'active' || have.has(m.version)) continue;
      if (d.token === primary.token) d.store.addPendingMaterial({ ...m });
      else await transferMaterial(primary, key, m, d);
    }
  }
  d.store.transaction(() => {
    if (key.origin !== 'EXTERNAL') {
      for (const info of primary.store.lifecycle.listMaterialInfo(key.keyId)) d.store.lifecycle.putMaterialInfo(info);
      // The schedule runs on the primary: a replica's copy has no next date, so its region's
      // scheduler never finds it due (UpdatePrimaryRegion hands the schedule over).
      const r = primary.store.lifecycle.getRotation(key.keyId);
      if (r) d.store.lifecycle.putRotation({ ...r, nextRotationAt: undefined });
    }
    if (replica.currentVersion !== key.currentVersion) d.store.updateKey(key.keyId, { currentVersion: key.currentVersion });
  });
}

/**
 * One material version, token to token: the source token wraps it under the trusted peer key
 * of the target region (the SO set-up, src/hsm/peer-keys.ts), the target token unwraps it with
 * its receive key, as wrappable material again, and the check values prove it is the same key.
 * Order: target row 'pending' → object → 'active'; a failure leaves no row and no object.
 */
export async function transferMaterial(primary: KmsDeps, key: KeyRecord, m: KeyMaterialRecord, d: KmsDeps): Promise<void> {
  if (viewOf(primary, key.keyId)?.wrappable !== true) {
    throw Errors.unsupported(`${key.arn} (${key.keySpec}) cannot be replicated to the Region ${d.region}, which keeps its keys in its own token: only symmetric multi-Region keys move between tokens.`);
  }
  const hash = (await oaepHashFor(primary, d)) ?? 'sha1';
  const out = await wrapFor(primary, m, d.region, hash);
  try {
    await receiveMaterial(d, m, out.wrapped, out.check, hash);
  } finally {
    out.wrapped.fill(0);
  }
  await d.audit.record({
    eventName: 'ReplicateKeyMaterial', eventType: 'AwsServiceEvent', readOnly: false,
    resources: [{ ARN: keyArn(d.region, key.accountId, key.keyId), type: 'AWS::KMS::Key', accountId: key.accountId }],
    additionalEventData: { keyMaterialId: m.materialId, fromRegion: primary.region, version: m.version },
  });
}

/** One version wrapped in `primary`'s token under its trusted peer key for `region` (the SO set-up). */
export async function wrapFor(primary: KmsDeps, m: KeyMaterialRecord, region: string, hash: OaepHash): Promise<{ wrapped: Buffer; check: Buffer }> {
  try {
    return await primary.token.wrapWithTrusted(m.objectId, peerKeyId(trustedLabel(region)), hash);
  } catch (e) {
    if (e instanceof NoTrustedKey) {
      throw Errors.invalidState(`The token of ${primary.region} has no trusted peer key for ${region}; run 'p11kms peer-key trust' as its security officer (README, "Multi-Region keys").`);
    }
    throw e;
  }
}

/**
 * The receiving half of a transfer (here, or at a peer site: peer-replication.ts): the version
 * row 'pending' → unwrapped in this token by its receive key, as wrappable material → the
 * check value compared → 'active'. A failure leaves no row and no object.
 */
export async function receiveMaterial(d: KmsDeps, m: KeyMaterialRecord, wrapped: Buffer, expectedCheck: Buffer, hash: OaepHash): Promise<void> {
  d.store.addPendingMaterial({ ...m, state: 'pending' });
  try {
    const check = await d.token.unwrapAesKey(
      peerKeyId(RECEIVE_LABEL), { hash, aesKeyWrap: false, modulusBytes: RECEIVE_MODULUS_BITS / 8 }, wrapped,
      { id: m.objectId, label: `${LABEL_PREFIX}${m.keyId}:v${m.version}`, wrappable: true },
    );
    if (!check.equals(expectedCheck)) {
      await d.token.destroy(m.objectId);
      throw Errors.internal(`The token of ${d.region} unwrapped different key material for ${m.keyId} v${m.version}.`);
    }
  } catch (e) {
    d.store.deleteMaterial(m.keyId, m.version);
    throw e;
  }
  d.store.activateMaterial(m.keyId, m.version);
}

/** SHA-256 OAEP when both tokens do it, else SHA-1 (SoftHSM 2.6.1 does OAEP with SHA-1 only). */
async function oaepHashFor(a: KmsDeps, b: KmsDeps): Promise<OaepHash | undefined> {
  const sha256 = { hash: 'sha256' as const, aesKeyWrap: false };
  return (await a.token.missingForImport(sha256)) === undefined && (await b.token.missingForImport(sha256)) === undefined ? 'sha256' : undefined;
}

/** CKA_IDs (hex) of this key's objects that a copy in another region sharing the token still names. */
export function objectIdsOfOtherCopies(deps: KmsDeps, id: string): Set<string> {
  const ids = new Set<string>();
  for (const other of deps.regions?.sharingToken(deps) ?? []) {
    for (const m of other.store.listMaterials(id)) ids.add(m.objectId.toString('hex'));
  }
  return ids;
}

/** The active version row of a copy in a region sharing the token, when it holds the same material. */
export function sameMaterialElsewhere(deps: KmsDeps, id: string, version: number, materialId: string): KeyMaterialRecord | undefined {
  for (const other of deps.regions?.sharingToken(deps) ?? []) {
    const m = other.store.getMaterial(id, version);
    if (m?.state === 'active' && m.materialId === materialId) return m;
  }
  return undefined;
}

/**
 * After a copy was deleted: the primary forgets it, here or at the peer that serves the
 * primary's region (best effort: a primary that missed it learns it at its next push, which
 * this site answers with Deleted).
 */
export async function afterCopyDeleted(deps: KmsDeps, deleted: KeyRecord, view: MultiRegionRecord | undefined): Promise<void> {
  const primaryCopy = localCopies(deps, deleted.keyId).find((c) => viewOf(c.deps, deleted.keyId)?.primaryRegion === c.deps.region);
  if (primaryCopy) return forgetCopy(primaryCopy.deps, deleted.keyId, deps.region);
  if (view && view.primaryRegion !== deps.region && deps.peers?.serves(view.primaryRegion)) {
    await deps.peers.call(view.primaryRegion, 'PeerCopyDeleted', { KeyId: deleted.keyId, Region: deps.region }).catch((e: unknown) => {
      deps.log.warn({ keyId: deleted.keyId, err: (e as Error).message }, 'the primary\'s site was not told of the deleted replica; it learns at its next push');
    });
  }
}

/**
 * The primary (in `primary`'s region) forgets its copy in `region`; a primary that waited for
 * its last replica (PendingReplicaDeletion) now starts its waiting period (PendingDeletion).
 */
export function forgetCopy(primary: KmsDeps, keyId: string, region: string): void {
  const view = viewOf(primary, keyId);
  const key = primary.store.getKey(keyId);
  if (!view || !key || !view.replicaRegions.includes(region)) return;
  const next: MultiRegionRecord = { ...view, replicaRegions: view.replicaRegions.filter((r) => r !== region) };
  writeView(primary, next);
  if (key.state === 'PendingReplicaDeletion' && next.replicaRegions.length === 0) {
    const days = view.pendingWindowDays ?? 30;
    const deletionDate = primary.clock.now().getTime() + days * 86_400_000;
    primary.store.updateKey(keyId, { state: 'PendingDeletion', deletionDate });
    primary.store.multiRegion.put({ ...next, pendingWindowDays: undefined });
    primary.log.info({ keyId, deletionDate: new Date(deletionDate).toISOString() }, 'last replica deleted: primary key now pending deletion');
  }
}
