import type { KmsError } from '../errors.js';
import type { Principal } from '../model/identity.js';
import { isReadOnly } from './sanitize.js';
import type { AuditActor, AuditEventInput, AuditResource } from './types.js';

/** What a front door knows about one call by the time it is answered. */
export interface CallInfo {
  /** The operation name as requested (only known names are recorded as such). */
  operation: string;
  known: boolean;
  requestId: string;
  /** The audit event id this call's event gets (GetKeyLastUsage reports it as CloudTrailEventId). */
  eventId?: string | undefined;
  sourceIp?: string | undefined;
  userAgent?: string | undefined;
  /** Set once authentication succeeded. */
  principal?: Principal | undefined;
  /** The Authorization header: for a request that failed authentication, the access key id it claimed is recorded. */
  authorization?: string | undefined;
  /** The decoded input (blobs are Buffers, so sanitizing drops them); unset when decoding failed. */
  input?: Record<string, unknown> | undefined;
  /** The region that served the call (its SigV4 scope), once authentication named it. */
  region?: string | undefined;
}

/**
 * The keys of one call as the core found them (src/kms/call-facts.ts): the key(s) involved and
 * the key-material id used. Audit records them; it does not resolve keys or parse ciphertexts.
 */
export interface CallKeyFacts {
  resources?: AuditResource[] | undefined;
  keyMaterialId?: string | undefined;
}

/**
 * The CloudTrail-shaped event for one AWS KMS API call: request parameters (sanitized by the
 * trail), response elements for control-plane calls (null for cryptographic calls, as
 * CloudTrail), the key(s) involved as resources, and the key-material id used.
 */
export function awsCallEvent(call: CallInfo, output: Record<string, unknown> | undefined, error: KmsError | undefined, keys: CallKeyFacts): AuditEventInput {
  const eventName = call.known ? call.operation : call.operation.replace(/[^A-Za-z0-9]/g, '').slice(0, 64) || 'Unknown';
  const readOnly = isReadOnly(eventName);
  const principal: Principal | AuditActor | undefined =
    call.principal ?? { type: 'Unknown', accessKeyId: claimedAccessKeyId(call.authorization) };
  const { resources, keyMaterialId } = keys;
  return {
    eventName,
    principal,
    sourceIp: call.sourceIp,
    userAgent: call.userAgent?.slice(0, 1024),
    requestId: call.requestId,
    eventId: call.eventId,
    requestParameters: call.input ?? null,
    responseElements: error || readOnly ? null : (output ?? null),
    resources,
    readOnly,
    errorCode: error?.code,
    errorMessage: error?.message,
    additionalEventData: keyMaterialId ? { keyMaterialId } : undefined,
  };
}

function claimedAccessKeyId(authorization: string | undefined): string | undefined {
  const claimed = authorization && /Credential=([^/,\s]+)/.exec(authorization)?.[1];
  return claimed ? claimed.replace(/[^A-Za-z0-9]/g, '').slice(0, 128) : undefined;
}
