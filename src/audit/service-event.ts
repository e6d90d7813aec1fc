import type { Logger } from '../log.js';
import type { KeyRecord } from '../store/types.js';
import type { Audit } from './types.js';

/** What a lifecycle job run did: items done and items that failed (retried on the next tick). */
export interface JobResult {
  done: number;
  failed: number;
}

/**
 * Records an action the daemon took on its own on one key (an `AwsServiceEvent`, named as
 * CloudTrail names AWS KMS's: RotateKey, DeleteKey, DeleteExpiredKeyMaterial), with the key as
 * the resource. The action has already happened, so a failed write is logged, not thrown.
 */
export async function recordKeyServiceEvent(
  deps: { audit: Audit; log: Logger },
  eventName: string,
  key: Pick<KeyRecord, 'keyId' | 'arn' | 'accountId'>,
  details: Record<string, unknown> = {},
): Promise<void> {
  try {
    await deps.audit.record({
      eventName,
      eventType: 'AwsServiceEvent',
      readOnly: false,
      requestParameters: null,
      resources: [{ ARN: key.arn, type: 'AWS::KMS::Key', accountId: key.accountId }],
      additionalEventData: { keyId: key.keyId, ...details },
    });
  } catch (e) {
    deps.log.error({ event: eventName, keyId: key.keyId, err: (e as Error).message }, 'audit event of a lifecycle action not written');
  }
}
