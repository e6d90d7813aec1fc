import { z } from 'zod';
import { Errors, isKmsError } from '../errors.js';
import type { OaepHash } from '../hsm/token.js';
import type { MultiRegionRecord } from '../store/multi-region.js';
import type { KeyRecord, Tag } from '../store/types.js';
import type { MaterialInfo, RotationSettings } from '../store/lifecycle.js';
import { keyArn } from './arn.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { forgetCopy, receiveMaterial, viewOf, wrapFor, writeView } from './multi-region.js';
import { defaultKeyPolicy, validateKeyPolicy } from './policies.js';

/**
 * The replication protocol between two sites (issue 13, part 4). The primary's site pushes a
 * replica's state to the site that serves the replica's region: key properties, the view
 * (primary and replicas), rotation settings, material history, and every material version
 * wrapped in its token under the trusted peer key of that region (the SO set-up, src/hsm/
 * peer-keys.ts). The receiving site unwraps each version into its own token with its receive
 * key and checks the check value. A push is idempotent: the first creates the replica (with
 * the ReplicateKey parameters), later ones add what changed (rotation, a new view). Calls are
 * SigV4-signed with the credentials each site issued to the other (src/api/peer/client.ts) and
 * answered only for those principals. A push that fails is retried at each scheduler tick
 * (syncAll); until it succeeds, the primary shows the replica and the replica is not yet there.
 */

export interface ReplicaCreation {
  Policy?: string | undefined;
  Description?: string | undefined;
  Tags?: Tag[] | undefined;
}

/** The primary side: what one push says, material included (wrapped for the target's token). */
export async function replicaPush(deps: KmsDeps, key: KeyRecord, region: string, create?: ReplicaCreation): Promise<Record<string, unknown>> {
  const view = viewOf(deps, key.keyId) as MultiRegionRecord;
  const versions = [];
  if (key.origin !== 'EXTERNAL') {
    if (view.wrappable !== true) {
      throw Errors.unsupported(`${key.arn} (${key.keySpec}) cannot be replicated to another site: only symmetric multi-Region keys move between tokens.`);
    }
    // SoftHSM 2.6.1 does OAEP with SHA-1 only; a token that does SHA-256 uses it.
    const hash: OaepHash = (await deps.token.missingForImport({ hash: 'sha256', aesKeyWrap: false })) === undefined ? 'sha256' : 'sha1';
    for (const m of deps.store.listMaterials(key.keyId)) {
      if (m.state !== 'active') continue;
      const out = await wrapFor(deps, m, region, hash);
      versions.push({
        Version: m.version, MaterialId: m.materialId, CreatedAt: m.createdAt, ObjectId: m.objectId.toString('hex'),
        WrappedKeyCiphertext: out.wrapped.toString('base64'), Check: out.check.toString('base64'), Hash: hash,
      });
      out.wrapped.fill(0);
    }
  }
  const r = deps.store.lifecycle.getRotation(key.keyId);
  return {
    KeyId: key.keyId, AccountId: key.accountId, FromRegion: deps.region, KeySpec: key.keySpec, KeyUsage: key.keyUsage,
    Origin: key.origin, CurrentVersion: key.currentVersion,
    View: { PrimaryRegion: view.primaryRegion, ReplicaRegions: view.replicaRegions, Wrappable: view.wrappable === true },
    Rotation: r ? { ...r, nextRotationAt: undefined } : undefined,
    MaterialInfo: deps.store.lifecycle.listMaterialInfo(key.keyId),
    Versions: versions,
    Create: create,
  };
}

/** Only the principals of credentials issued to a peer may call the peer operations. */
function requirePeer(deps: KmsDeps, ctx: RequestContext): void {
  if (!deps.peers?.isPeerPrincipal?.(ctx.principal.arn)) {
    throw Errors.accessDenied(`User: ${ctx.principal.arn} is not authorized to perform this operation: it is reserved for the peers of this key store.`);
  }
}

const View = z.object({ PrimaryRegion: z.string(), ReplicaRegions: z.array(z.string()), Wrappable: z.boolean() });
const SyncSchema = z.object({
  KeyId: z.string().regex(/^mrk-[0-9a-f]{32}$/),
  AccountId: z.string().regex(/^\d{12}$/),
  FromRegion: z.string(),
  KeySpec: z.string(),
  KeyUsage: z.string(),
  Origin: z.string(),
  CurrentVersion: z.number().int().min(1),
  View,
  Rotation: z.record(z.string(), z.unknown()).optional(),
  MaterialInfo: z.array(z.record(z.string(), z.unknown())),
  Versions: z.array(z.object({
    Version: z.number().int().min(1), MaterialId: z.string(), CreatedAt: z.number(), ObjectId: z.string().regex(/^[0-9a-f]{40}$/),
    WrappedKeyCiphertext: z.string(), Check: z.string(), Hash: z.enum(['sha1', 'sha256']),
  })),
  Create: z.object({
    Policy: z.string().optional(), Description: z.string().optional(),
    Tags: z.array(z.object({ TagKey: z.string(), TagValue: z.string() })).optional(),
  }).optional(),
});

/**
 * The replica side of a push. Creates the replica (state Creating until every version is in
 * the token) or brings it up to date; answers Deleted when this site deleted the replica, so
 * the primary forgets it instead of recreating it.
 */
export const PeerSyncReplica = operation(SyncSchema, async (deps, ctx, input) => {
  requirePeer(deps, ctx);
  const existing = deps.store.getKey(input.KeyId);
  const now = deps.clock.now().getTime();
  let created = false;
  if (!existing) {
    if (!input.Create) {
      if (deps.store.lifecycle.getDeletion(input.KeyId)) return { Deleted: true };
      throw Errors.notFound(`Key '${keyArn(deps.region, input.AccountId, input.KeyId)}' does not exist`);
    }
    const policy = input.Create.Policy ?? defaultKeyPolicy(input.AccountId);
    validateKeyPolicy(policy);
    const replica: KeyRecord = {
      keyId: input.KeyId, arn: keyArn(deps.region, input.AccountId, input.KeyId), accountId: input.AccountId, region: deps.region,
      createdAt: now, description: input.Create.Description ?? '', keyUsage: input.KeyUsage, keySpec: input.KeySpec, origin: input.Origin,
      keyManager: 'CUSTOMER', state: input.Origin === 'EXTERNAL' ? 'PendingImport' : 'Creating', policy, currentVersion: input.CurrentVersion,
    };
    deps.store.transaction(() => {
      deps.store.createKey(replica, input.Create?.Tags ?? []);
      deps.store.multiRegion.put(viewFrom(input));
    });
    created = true;
  } else if (viewOf(deps, input.KeyId)?.primaryRegion === deps.region) {
    throw Errors.alreadyExists(`${existing.arn} is the primary key here; it is not a replica of ${input.FromRegion}.`);
  }
  try {
    for (const v of input.Versions) {
      if (deps.store.getMaterial(input.KeyId, v.Version)?.state === 'active') continue;
      const m = { keyId: input.KeyId, version: v.Version, materialId: v.MaterialId, objectId: Buffer.from(v.ObjectId, 'hex'), state: 'pending' as const, createdAt: v.CreatedAt };
      await receiveMaterial(deps, m, Buffer.from(v.WrappedKeyCiphertext, 'base64'), Buffer.from(v.Check, 'base64'), v.Hash);
    }
  } catch (e) {
    if (created) {
      for (const m of deps.store.listMaterials(input.KeyId)) await deps.token.destroy(m.objectId);
      deps.store.deleteKey(input.KeyId);
    }
    throw e;
  }
  deps.store.transaction(() => {
    for (const info of input.MaterialInfo) deps.store.lifecycle.putMaterialInfo(info as unknown as MaterialInfo);
    if (input.Rotation) deps.store.lifecycle.putRotation(input.Rotation as unknown as RotationSettings);
    writeView(deps, viewFrom(input));
    const key = deps.store.getKey(input.KeyId) as KeyRecord;
    const patch: Parameters<typeof deps.store.updateKey>[1] = {};
    if (key.currentVersion !== input.CurrentVersion) patch.currentVersion = input.CurrentVersion;
    if (key.state === 'Creating') patch.state = 'Enabled';
    if (Object.keys(patch).length) deps.store.updateKey(input.KeyId, patch);
  });
  const key = deps.store.getKey(input.KeyId) as KeyRecord;
  if (created) {
    await deps.audit.record({
      eventName: 'CreateKey', eventType: 'AwsServiceEvent', readOnly: false, requestId: ctx.requestId,
      resources: [{ ARN: key.arn, type: 'AWS::KMS::Key', accountId: key.accountId }],
      additionalEventData: { replicaOf: keyArn(input.FromRegion, input.AccountId, input.KeyId) },
    });
  }
  // The primary's site builds ReplicaKeyMetadata from these (peer-push.ts).
  return {
    KeyState: key.state, CreationDate: key.createdAt, Description: key.description,
    ReplicaPolicy: key.policy, ReplicaTags: deps.store.getTags(key.keyId),
  };
});

const viewFrom = (input: z.output<typeof SyncSchema>): MultiRegionRecord => ({
  keyId: input.KeyId, primaryRegion: input.View.PrimaryRegion, replicaRegions: input.View.ReplicaRegions, wrappable: input.View.Wrappable,
});

/** A copy at the caller's site was deleted: the primary here forgets it (multi-region.ts, afterCopyDeleted). */
export const PeerCopyDeleted = operation(z.object({ KeyId: z.string(), Region: z.string() }), (deps, ctx, input) => {
  requirePeer(deps, ctx);
  forgetCopy(deps, input.KeyId, input.Region);
  return {};
});

/** UpdatePrimaryRegion across sites: the new view (and, for the new primary, the rotation schedule). */
export const PeerSetView = operation(
  z.object({ KeyId: z.string(), View, Rotation: z.record(z.string(), z.unknown()).optional() }),
  (deps, ctx, input) => {
    requirePeer(deps, ctx);
    const key = deps.store.getKey(input.KeyId);
    if (!key || !viewOf(deps, input.KeyId)) throw Errors.notFound(`Key '${keyArn(deps.region, ctx.principal.accountId, input.KeyId)}' does not exist`);
    const current = viewOf(deps, input.KeyId) as MultiRegionRecord;
    writeView(deps, { ...current, primaryRegion: input.View.PrimaryRegion, replicaRegions: input.View.ReplicaRegions });
    if (input.Rotation) deps.store.lifecycle.putRotation(input.Rotation as unknown as RotationSettings);
    return {};
  },
);

/** Whether a peer's failure may be retried later (unreachable, a fault) rather than refused now. */
export const isRetryable = (e: unknown): boolean => !isKmsError(e) || e.isFault;
