import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import type { Logger } from '../log.js';
import type { KeyUsageRecord } from '../store/key-usage.js';
import type { KeyRecord, MetadataStore } from '../store/types.js';
import { operation, type KmsDeps } from './context.js';
import { resolveKey } from './key-ref.js';
import { checkKeyState } from './key-states.js';
import { KEY_ID } from './validation.js';

/** AWS's KeyLastUsageTrackingOperation: the operations whose success counts as a use of the key. */
export const TRACKED_OPERATIONS: ReadonlySet<string> = new Set([
  'Decrypt', 'DeriveSharedSecret', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext',
  'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'ReEncrypt', 'Sign', 'Verify', 'VerifyMac',
]);
const DEFAULT_FLUSH_MS = 5_000;
const KEY_ID_OF_ARN = /:key\/([0-9a-f-]{36})$/;

/**
 * Records key use off the hot path: a successful call costs one Map.set; the map is written to
 * the store in one transaction every few seconds and at shutdown (stop()). Readers see the
 * unflushed uses of this node too. A crash loses at most one interval of usage dates, never
 * anything else (the audit trail keeps every call regardless).
 */
export class KeyUsageRecorder {
  private pending = new Map<string, KeyUsageRecord>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: MetadataStore,
    private readonly log: Logger,
    private readonly flushMs = DEFAULT_FLUSH_MS,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.flush(), this.flushMs);
    this.timer.unref();
  }

  /** Flushes what is pending; call before the store closes. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }

  /**
   * Notes a successful call of `operationName`: the key(s) its answer names (KeyId, and
   * ReEncrypt's SourceKeyId) were used now. Other operations are ignored.
   */
  noteSuccess(operationName: string, output: Record<string, unknown> | undefined, usedAt: number, eventId: string, requestId: string): void {
    if (!TRACKED_OPERATIONS.has(operationName) || !output) return;
    for (const ref of [output.KeyId, output.SourceKeyId]) {
      if (typeof ref !== 'string') continue;
      const keyId = KEY_ID_OF_ARN.exec(ref)?.[1] ?? ref;
      this.pending.set(keyId, { keyId, operation: operationName, usedAt, eventId, requestId });
    }
  }

  /** The key's last use: this node's unflushed one, else the store's. */
  lastUse(keyId: string): KeyUsageRecord | undefined {
    const stored = this.store.keyUsage.get(keyId);
    const mine = this.pending.get(keyId);
    return mine && (!stored || mine.usedAt >= stored.usedAt) ? mine : stored;
  }

  flush(): void {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      this.store.keyUsage.putMany(batch.values());
    } catch (e) {
      // Keep the batch for the next attempt, unless newer uses replaced its entries meanwhile.
      for (const [k, v] of batch) if (!this.pending.has(k)) this.pending.set(k, v);
      this.log.warn({ err: (e as Error).message, keys: batch.size }, 'key usage not written; will retry');
    }
  }
}

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
