import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import type { KeyUsageRecord } from '../store/key-usage.js';
import type { KeyRecord } from '../store/types.js';
import { operation, type KmsDeps } from './context.js';
import { resolveKey } from './key-ref.js';
import { checkKeyState } from './key-states.js';
import { KEY_ID } from './validation.js';


/** When tracking began for this key: the store's tracking start or the key's creation, whichever is later. */
function trackingStartFor(deps: KmsDeps, key: KeyRecord): number {
  return Math.max(deps.store.keyUsage.trackingStart(deps.clock.now().getTime()), key.createdAt);
}

function lastUseOf(deps: KmsDeps, keyId: string): KeyUsageRecord | undefined {
  return deps.keyUsage ? deps.keyUsage.lastUse(keyId) : deps.store.keyUsage.get(keyId);
}

export const GetKeyLastUsage = operation(z.object({ KeyId: KEY_ID }), (deps, ctx, input) => {
  // Key id or key ARN only (AWS: "Alias names are not supported").
  const key = resolveKey(deps, ctx, input.KeyId, false);
  authorize(ctx, 'GetKeyLastUsage', key);
  checkKeyState(key, 'GetKeyLastUsage');
  const use = lastUseOf(deps, key.keyId);
  return {
    KeyId: key.keyId,
    // Never used since tracking began: the element is there and empty, as AWS documents it.
    KeyLastUsage: use
      ? { Operation: use.operation, Timestamp: new Date(use.usedAt), CloudTrailEventId: use.eventId, KmsRequestId: use.requestId }
      : {},
    TrackingStartDate: new Date(trackingStartFor(deps, key)),
    KeyCreationDate: new Date(key.createdAt),
  };
});

export interface UnusedKey {
  keyId: string;
  arn: string;
  state: string;
  createdAt: number;
  /** Absent: not used since tracking began. */
  lastUsedAt?: number | undefined;
  lastOperation?: string | undefined;
  trackingStartAt: number;
}

/**
 * Keys of an account with no successful cryptographic use in the last `days` days (never-used
 * keys older than that included): the on-premises answer to Access Analyzer's "unused keys".
 * For the operator report (`p11kms keys unused --days N`).
 */
export function findUnusedKeys(deps: KmsDeps, accountId: string, days: number): UnusedKey[] {
  deps.keyUsage?.flush();
  const now = deps.clock.now().getTime();
  const cutoff = now - days * 86_400_000;
  const out: UnusedKey[] = [];
  let marker: string | undefined;
  do {
    const page = deps.store.listKeys(accountId, 1000, marker);
    for (const key of page.items) {
      if (key.state === 'Creating') continue;
      const use = lastUseOf(deps, key.keyId);
      const since = use?.usedAt ?? trackingStartFor(deps, key);
      if (since > cutoff) continue;
      out.push({
        keyId: key.keyId, arn: key.arn, state: key.state, createdAt: key.createdAt,
        lastUsedAt: use?.usedAt, lastOperation: use?.operation, trackingStartAt: trackingStartFor(deps, key),
      });
    }
    marker = page.nextMarker;
  } while (marker !== undefined);
  return out;
}
