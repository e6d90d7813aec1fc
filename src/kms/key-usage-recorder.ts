import type { Logger } from '../log.js';
import type { KeyUsageRecord } from '../store/key-usage.js';
import type { MetadataStore } from '../store/types.js';

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
