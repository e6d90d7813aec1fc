import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import type { KeyRecord } from '../store/types.js';
import { keyArn } from './arn.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { keyMetadata } from './key-metadata.js';
import { resolveKey } from './key-ref.js';
import { checkKeyState } from './key-states.js';
import { defaultKeyPolicy } from './keys.js';
import { inRegion, isMultiRegion, isReplica, localCopies, servedRegion, viewOf, writeView } from './multi-region.js';
import { syncReplicas, syncReplicasLater } from './replica-sync.js';
import { promotePeer, replicateToPeer } from './peer-push.js';
import { checkLockout, validateKeyPolicy } from './policies.js';
import { checkTags } from './tags.js';
import { bool, DESCRIPTION, KEY_ID, list, str, TAG } from './validation.js';

/** botocore's RegionType. */
const REGION = str(1, 32, /^([a-z]+-){2,3}\d+$/);

/** The Multi-Region primary named by KeyId, with AWS's refusals for any other key. */
function primaryKey(deps: KmsDeps, ctx: RequestContext, ref: string, action: string): KeyRecord {
  const key = resolveKey(deps, ctx, ref, false);
  authorize(ctx, action, key);
  if (!isMultiRegion(deps, key)) throw Errors.unsupported(`${key.arn} is not a multi-Region key.`);
  if (isReplica(deps, key)) {
    throw Errors.unsupported(`${key.arn} is a multi-Region replica key. ${action} requires the primary key (in ${viewOf(deps, key.keyId)?.primaryRegion}).`);
  }
  return key;
}

export const ReplicateKey = operation(
  z.object({
    KeyId: KEY_ID,
    ReplicaRegion: REGION,
    Policy: str(1, 131072, /^[\u0009\u000A\u000D\u0020-\u00FF]+$/).optional(),
    BypassPolicyLockoutSafetyCheck: bool().optional(),
    Description: DESCRIPTION.optional(),
    Tags: list(TAG, 0, 1000).optional(),
  }),
  async (deps, ctx, input) => {
    const primary = primaryKey(deps, ctx, input.KeyId, 'ReplicateKey');
    checkKeyState(primary, 'ReplicateKey');
    const view = viewOf(deps, primary.keyId)!;
    if (input.ReplicaRegion === deps.region || view.replicaRegions.includes(input.ReplicaRegion)) {
      throw Errors.alreadyExists(`${keyArn(input.ReplicaRegion, primary.accountId, primary.keyId)} already exists.`);
    }
    const tags = input.Tags ?? [];
    checkTags(tags, 0);
    const compiled = input.Policy === undefined ? undefined : validateKeyPolicy(input.Policy);
    // A region served by a peer site: the replication protocol (peer-push.ts).
    if (!deps.regions?.get(input.ReplicaRegion) && deps.peers?.serves(input.ReplicaRegion)) {
      return replicateToPeer(deps, primary, input.ReplicaRegion, { Policy: input.Policy, Description: input.Description, Tags: tags });
    }
    const target = servedRegion(deps, input.ReplicaRegion);
    if (target.store.getKey(primary.keyId)) {
      throw Errors.alreadyExists(`${keyArn(input.ReplicaRegion, primary.accountId, primary.keyId)} already exists.`);
    }
    // AWS: kms:ReplicateKey on the primary, kms:CreateKey (and kms:TagResource for Tags) in the replica's Region.
    const there = inRegion(ctx, target);
    authorize(there, 'CreateKey');
    if (tags.length) authorize(there, 'TagResource');
    if (target.token !== deps.token && primary.origin !== 'EXTERNAL' && viewOf(deps, primary.keyId)?.wrappable !== true) {
      throw Errors.unsupported(
        `${primary.arn} (${primary.keySpec}) cannot be replicated to the Region ${target.region}, which keeps its keys in its own token: only symmetric multi-Region keys move between tokens.`,
      );
    }
    const now = deps.clock.now().getTime();
    const replica: KeyRecord = {
      ...primary,
      arn: keyArn(target.region, primary.accountId, primary.keyId),
      region: target.region,
      createdAt: now,
      description: input.Description ?? '',
      policy: input.Policy ?? defaultKeyPolicy(primary.accountId),
      // Imported key material: the replica has none until the same material is imported into it.
      // Otherwise the replica is Creating until its material is in its token.
      state: primary.origin === 'EXTERNAL' ? 'PendingImport' : 'Creating',
      deletionDate: undefined,
    };
    if (compiled) checkLockout(there, replica, compiled, input.BypassPolicyLockoutSafetyCheck);
    const next = { ...view, replicaRegions: [...view.replicaRegions, target.region] };
    target.store.transaction(() => {
      target.store.createKey(replica, tags);
      target.store.multiRegion.put({ ...next, pendingWindowDays: undefined });
    });
    try {
      if (primary.origin !== 'EXTERNAL') {
        await syncReplicas(deps, primary.keyId);
        target.store.updateKey(primary.keyId, { state: 'Enabled' });
      } else copyImportedHistory(deps, target, primary.keyId);
    } catch (e) {
      // Never half done: the replica's objects (in its own token) and rows go again.
      if (target.token !== deps.token) for (const m of target.store.listMaterials(primary.keyId)) await target.token.destroy(m.objectId);
      target.store.deleteKey(primary.keyId);
      throw e;
    }
    writeView(deps, next);
    deps.log.info({ keyId: primary.keyId, replicaRegion: target.region }, 'multi-Region key replicated');
    // AWS records ReplicateKey in the primary's Region and CreateKey in the replica's.
    await target.audit.record({
      eventName: 'CreateKey', eventType: 'AwsServiceEvent', readOnly: false, requestId: ctx.requestId,
      resources: [{ ARN: replica.arn, type: 'AWS::KMS::Key', accountId: replica.accountId }],
      additionalEventData: { replicaOf: primary.arn },
    });
    const stored = target.store.getKey(primary.keyId) as KeyRecord;
    return {
      ReplicaKeyMetadata: keyMetadata(target, stored),
      ReplicaPolicy: stored.policy,
      ReplicaTags: target.store.getTags(primary.keyId),
    };
  },
);

/**
 * Imported key material is not replicated: the replica starts PendingImport and the same
 * material must be imported into it (import.ts checks it is the same). The material history
 * (ids, no material) tells the replica which material it expects.
 */
function copyImportedHistory(deps: KmsDeps, target: KmsDeps, id: string): void {
  target.store.transaction(() => {
    for (const info of deps.store.lifecycle.listMaterialInfo(id)) {
      if (info.imported && !info.pendingRotation) {
        target.store.lifecycle.putMaterialInfo({ ...info, importState: 'PENDING_IMPORT', validTo: undefined });
      }
    }
  });
}

export const UpdatePrimaryRegion = operation(
  z.object({ KeyId: KEY_ID, PrimaryRegion: REGION }),
  async (deps, ctx, input) => {
    const primary = primaryKey(deps, ctx, input.KeyId, 'UpdatePrimaryRegion');
    const view = viewOf(deps, primary.keyId)!;
    if (input.PrimaryRegion === deps.region) {
      throw Errors.unsupported(`${primary.arn} is already the primary key of this multi-Region key.`);
    }
    const copy = view.replicaRegions.includes(input.PrimaryRegion)
      ? localCopies(deps, primary.keyId).find((c) => c.deps.region === input.PrimaryRegion)
      : undefined;
    if (!copy && view.replicaRegions.includes(input.PrimaryRegion) && deps.peers?.serves(input.PrimaryRegion)) {
      checkKeyState(primary, 'UpdatePrimaryRegion');
      await promotePeer(deps, primary, input.PrimaryRegion);
      deps.log.info({ keyId: primary.keyId, from: deps.region, to: input.PrimaryRegion }, 'primary Region updated (peer site)');
      return {};
    }
    if (!copy) {
      throw Errors.notFound(`Key '${keyArn(input.PrimaryRegion, primary.accountId, primary.keyId)}' does not exist`);
    }
    authorize(inRegion(ctx, copy.deps), 'UpdatePrimaryRegion', copy.key);
    // AWS: both keys must be Enabled when the operation starts.
    checkKeyState(primary, 'UpdatePrimaryRegion');
    checkKeyState(copy.key, 'UpdatePrimaryRegion');
    const replicas = [...view.replicaRegions.filter((r) => r !== input.PrimaryRegion), deps.region];
    // The copies of one deployment change together, so the transient Updating state is never seen here.
    writeView(deps, { ...view, primaryRegion: input.PrimaryRegion, replicaRegions: replicas, pendingWindowDays: undefined });
    // The automatic-rotation schedule moves to the new primary; the old one becomes a replica's copy.
    const rotation = deps.store.lifecycle.getRotation(primary.keyId);
    if (rotation) copy.deps.store.lifecycle.putRotation(rotation);
    await syncReplicasLater(copy.deps, primary.keyId);
    deps.log.info({ keyId: primary.keyId, from: deps.region, to: input.PrimaryRegion }, 'primary Region updated');
    return {};
  },
);
