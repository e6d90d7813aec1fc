import type { XksAuditEvent } from '../api/xks/server.js';
import type { KmsDeps } from '../kms/context.js';
import type { AuditEventInput, AuditResource } from './types.js';

/** eventSource of XKS proxy calls (the SigV4 service name AWS KMS signs them with). */
export const XKS_EVENT_SOURCE = 'kms-xks-proxy';

/**
 * The CloudTrail-shaped event for one XKS proxy call: the XKS operation as eventName, the
 * external key id and the validated requestMetadata (awsPrincipalArn, kmsOperation,
 * kmsRequestId, kmsKeyArn, …) as request parameters, the daemon key the external key id resolved
 * to as the resource, and the XKS error name as errorCode. XksAuditEvent never holds plaintext,
 * ciphertext, AAD or IV bytes; the trail's sanitizer would drop such members anyway.
 *
 * The caller is AWS KMS (the SigV4 credential of the URI prefix): userIdentity is
 * {type: 'AWSService', invokedBy: 'kms.amazonaws.com', accessKeyId}; a request that failed
 * authentication is 'Unknown'.
 */
export function xksCallEvent(deps: KmsDeps, e: XksAuditEvent): AuditEventInput {
  let resources: AuditResource[] | undefined;
  if (e.keyId) {
    const key = deps.store.getKey(e.keyId);
    if (key) resources = [{ ARN: key.arn, type: 'AWS::KMS::Key', accountId: key.accountId }];
  }
  const requestParameters: Record<string, unknown> = {};
  if (e.externalKeyId !== undefined) requestParameters.externalKeyId = e.externalKeyId.slice(0, 128);
  if (e.requestMetadata) requestParameters.requestMetadata = e.requestMetadata;
  return {
    eventName: e.operation ?? 'Unknown',
    eventSource: XKS_EVENT_SOURCE,
    time: e.time,
    principal: e.accessKeyId
      ? { type: 'AWSService', invokedBy: 'kms.amazonaws.com', accessKeyId: e.accessKeyId }
      : { type: 'Unknown' },
    sourceIp: e.sourceIp,
    requestId: e.requestId,
    requestParameters: Object.keys(requestParameters).length ? requestParameters : null,
    responseElements: null,
    resources,
    readOnly: true,
    errorCode: e.errorName ?? (e.status >= 400 ? `HTTP${e.status}` : undefined),
    errorMessage: e.errorMessage,
    additionalEventData: { uriPrefix: e.uriPrefix, httpStatus: e.status },
  };
}
