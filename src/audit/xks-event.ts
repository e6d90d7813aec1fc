import type { AuditEventInput, AuditResource } from './types.js';

/** eventSource of XKS proxy calls (the SigV4 service name AWS KMS signs them with). */
export const XKS_EVENT_SOURCE = 'kms-xks-proxy';

/**
 * What the XKS front door knows about one call when it is answered (its XksAuditEvent), in plain
 * terms: audit sits beside the core and knows no front door.
 */
export interface XksCallFacts {
  time: Date;
  requestId: string;
  operation?: string | undefined;
  uriPrefix?: string | undefined;
  externalKeyId?: string | undefined;
  /** The daemon key the external key id resolved to, as the core resolved it. */
  keyArn?: string | undefined;
  keyAccountId?: string | undefined;
  accessKeyId?: string | undefined;
  sourceIp?: string | undefined;
  requestMetadata?: object | undefined;
  status: number;
  errorName?: string | undefined;
  errorMessage?: string | undefined;
}

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
export function xksCallEvent(e: XksCallFacts): AuditEventInput {
  let resources: AuditResource[] | undefined;
  if (e.keyArn) resources = [{ ARN: e.keyArn, type: 'AWS::KMS::Key', accountId: e.keyAccountId }];
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
