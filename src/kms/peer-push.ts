import { Errors } from '../errors.js';
import type { KeyRecord } from '../store/types.js';
import type { KmsDeps } from './context.js';
import { forgetCopy, viewOf, writeView } from './multi-region.js';
import { isRetryable, replicaPush, type ReplicaCreation } from './peer-replication.js';

/**
 * The primary's side of the peer protocol (peer-replication.ts): pushes a primary's state to
 * the replicas that peer sites serve. A push is skipped when nothing changed since the last one
 * this process made (a restart pushes once more: pushes are idempotent).
 */

const lastPushed = new WeakMap<KmsDeps, Map<string, string>>();

function fingerprint(deps: KmsDeps, key: KeyRecord): string {
  const view = viewOf(deps, key.keyId);
  const versions = deps.store.listMaterials(key.keyId).filter((m) => m.state === 'active').map((m) => m.version);
  return JSON.stringify([key.currentVersion, versions, view?.primaryRegion, view?.replicaRegions, deps.store.lifecycle.getRotation(key.keyId)]);
}

/** Pushes to one peer region; returns the peer's answer, or undefined when the peer deleted its replica. */
export async function pushTo(deps: KmsDeps, key: KeyRecord, region: string): Promise<Record<string, unknown> | undefined> {
  const pending = deps.store.multiRegion.pendingReplica(key.keyId, region);
  const create = pending === undefined ? undefined : (JSON.parse(pending) as ReplicaCreation);
  let answer: Record<string, unknown>;
  try {
    answer = await deps.peers!.call(region, 'PeerSyncReplica', await replicaPush(deps, key, region, create));
  } catch (e) {
    await deps.audit.record({
      eventName: 'ReplicateKeyToPeer', eventType: 'AwsServiceEvent', readOnly: false,
      resources: [{ ARN: key.arn, type: 'AWS::KMS::Key', accountId: key.accountId }],
      errorCode: (e as { code?: string }).code ?? 'PeerUnreachable', errorMessage: (e as Error).message,
      additionalEventData: { replicaRegion: region, retried: isRetryable(e) },
    });
    if (!isRetryable(e) && create) {
      // The peer refused to create the replica (a bad policy, a key of that id already there):
      // ReplicateKey is undone, not retried forever.
      deps.store.multiRegion.deletePendingReplica(key.keyId, region);
      forgetCopy(deps, key.keyId, region);
    }
    throw e;
  }
  deps.store.multiRegion.deletePendingReplica(key.keyId, region);
  await deps.audit.record({
    eventName: 'ReplicateKeyToPeer', eventType: 'AwsServiceEvent', readOnly: false,
    resources: [{ ARN: key.arn, type: 'AWS::KMS::Key', accountId: key.accountId }],
    additionalEventData: { replicaRegion: region, created: create !== undefined, deleted: answer.Deleted === true, currentVersion: key.currentVersion },
  });
  if (answer.Deleted === true) {
    forgetCopy(deps, key.keyId, region);
    return undefined;
  }
  return answer;
}

/** Brings every replica at a peer site up to date; throws the first failure after trying them all. */
export async function pushToPeers(deps: KmsDeps, keyId: string): Promise<void> {
  const key = deps.store.getKey(keyId);
  const view = viewOf(deps, keyId);
  if (!key || !view || view.primaryRegion !== deps.region || !deps.peers) return;
  let map = lastPushed.get(deps);
  if (!map) lastPushed.set(deps, (map = new Map()));
  let failure: unknown;
  for (const region of view.replicaRegions) {
    if (deps.regions?.get(region) || !deps.peers.serves(region)) continue;
    const print = fingerprint(deps, key);
    if (map.get(`${keyId}|${region}`) === print) continue;
    try {
      await pushTo(deps, key, region);
      map.set(`${keyId}|${region}`, fingerprint(deps, deps.store.getKey(keyId) ?? key));
    } catch (e) {
      failure ??= e;
    }
  }
  if (failure) throw failure;
}

/**
 * ReplicateKey into a region a peer serves. The primary lists the replica at once; the peer
 * creates it when the push arrives. A peer that cannot be reached leaves the replica Creating
 * (as AWS shows a new replica) and the push is retried at each scheduler tick.
 */
export async function replicateToPeer(deps: KmsDeps, primary: KeyRecord, region: string, create: ReplicaCreation) {
  const view = viewOf(deps, primary.keyId)!;
  deps.store.transaction(() => {
    deps.store.multiRegion.putPendingReplica(primary.keyId, region, JSON.stringify(create));
    writeView(deps, { ...view, replicaRegions: [...view.replicaRegions, region] });
  });
  let answer: Record<string, unknown> | undefined;
  try {
    answer = await pushTo(deps, primary, region);
  } catch (e) {
    if (!isRetryable(e)) throw e;
    deps.log.warn({ keyId: primary.keyId, region, err: (e as Error).message }, 'peer unreachable: replica stays Creating, retried');
  }
  // Until the peer answers, what AWS answers while a replica is being created: state Creating.
  const state = typeof answer?.KeyState === 'string' ? answer.KeyState : 'Creating';
  const arnIn = (r: string) => primary.arn.replace(`:kms:${deps.region}:`, `:kms:${r}:`);
  const regions = viewOf(deps, primary.keyId)!;
  return {
    ReplicaKeyMetadata: {
      AWSAccountId: primary.accountId, KeyId: primary.keyId, Arn: arnIn(region),
      CreationDate: new Date(typeof answer?.CreationDate === 'number' ? answer.CreationDate : deps.clock.now().getTime()),
      Enabled: state === 'Enabled', Description: typeof answer?.Description === 'string' ? answer.Description : (create.Description ?? ''), KeyUsage: primary.keyUsage, KeyState: state, Origin: primary.origin,
      KeyManager: 'CUSTOMER', CustomerMasterKeySpec: primary.keySpec, KeySpec: primary.keySpec, MultiRegion: true,
      MultiRegionConfiguration: {
        MultiRegionKeyType: 'REPLICA',
        PrimaryKey: { Arn: primary.arn, Region: deps.region },
        ReplicaKeys: regions.replicaRegions.map((r) => ({ Arn: arnIn(r), Region: r })),
      },
    },
    ReplicaPolicy: answer?.ReplicaPolicy ?? create.Policy,
    ReplicaTags: answer?.ReplicaTags ?? create.Tags ?? [],
  };
}

/** UpdatePrimaryRegion to a region a peer serves: the peer takes the new view (and the schedule) first. */
export async function promotePeer(deps: KmsDeps, key: KeyRecord, region: string): Promise<void> {
  const view = viewOf(deps, key.keyId)!;
  const replicas = [...view.replicaRegions.filter((r) => r !== region), deps.region];
  const rotation = deps.store.lifecycle.getRotation(key.keyId);
  try {
    await deps.peers!.call(region, 'PeerSetView', {
      KeyId: key.keyId, View: { PrimaryRegion: region, ReplicaRegions: replicas, Wrappable: view.wrappable === true }, Rotation: rotation,
    });
  } catch (e) {
    if (isRetryable(e)) throw Errors.dependencyTimeout(`The primary Region was not changed: ${(e as Error).message}`);
    throw e;
  }
  deps.store.transaction(() => {
    writeView(deps, { ...view, primaryRegion: region, replicaRegions: replicas, pendingWindowDays: undefined });
    if (rotation) deps.store.lifecycle.putRotation({ ...rotation, nextRotationAt: undefined });
  });
}
