import type { KmsError } from '../errors.js';
import { parseCiphertext } from '../kms/ciphertext.js';
import type { KmsDeps, Principal, RequestContext } from '../kms/context.js';
import { resolveKey } from '../kms/key-ref.js';
import { isReadOnly } from './sanitize.js';
import type { AuditActor, AuditEventInput, AuditResource } from './types.js';

/** What a front door knows about one call by the time it is answered. */
export interface CallInfo {
  /** The operation name as requested (only known names are recorded as such). */
  operation: string;
  known: boolean;
  requestId: string;
  sourceIp?: string | undefined;
  userAgent?: string | undefined;
  /** Set once authentication succeeded. */
  principal?: Principal | undefined;
  /** The Authorization header: for a request that failed authentication, the access key id it claimed is recorded. */
  authorization?: string | undefined;
  /** The decoded input (blobs are Buffers, so sanitizing drops them); unset when decoding failed. */
  input?: Record<string, unknown> | undefined;
  /** Set by doors other than the AWS API (the REST sidecar): recorded in additionalEventData with the socket it came through. */
  frontDoor?: { name: string; socket?: string | undefined } | undefined;
}

const KEY_TYPE = 'AWS::KMS::Key';
const ARN = /^arn:aws[a-z-]*:kms:[^:]*:\d{12}:key\/[0-9a-f-]{36}$/;

/**
 * The CloudTrail-shaped event for one AWS KMS API call: request parameters (sanitized by the
 * trail), response elements for control-plane calls (null for cryptographic calls, as
 * CloudTrail), the key(s) involved as resources, and the key-material id used.
 */
export function awsCallEvent(deps: KmsDeps, call: CallInfo, output: Record<string, unknown> | undefined, error: KmsError | undefined): AuditEventInput {
  const eventName = call.known ? call.operation : call.operation.replace(/[^A-Za-z0-9]/g, '').slice(0, 64) || 'Unknown';
  const readOnly = isReadOnly(eventName);
  const principal: Principal | AuditActor | undefined =
    call.principal ?? { type: 'Unknown', accessKeyId: claimedAccessKeyId(call.authorization) };
  const resources = resourcesOf(deps, call, output);
  const keyMaterialId = materialIdOf(deps, output);
  const additional = { ...(keyMaterialId ? { keyMaterialId } : {}), ...(call.frontDoor ? { frontDoor: call.frontDoor.name, socket: call.frontDoor.socket } : {}) };
  return {
    eventName,
    principal,
    sourceIp: call.sourceIp,
    userAgent: call.userAgent?.slice(0, 1024),
    requestId: call.requestId,
    requestParameters: call.input ?? null,
    responseElements: error || readOnly ? null : (output ?? null),
    resources,
    readOnly,
    errorCode: error?.code,
    errorMessage: error?.message,
    additionalEventData: Object.keys(additional).length ? additional : undefined,
  };
}

function claimedAccessKeyId(authorization: string | undefined): string | undefined {
  const claimed = authorization && /Credential=([^/,\s]+)/.exec(authorization)?.[1];
  return claimed ? claimed.replace(/[^A-Za-z0-9]/g, '').slice(0, 128) : undefined;
}

function resourcesOf(deps: KmsDeps, call: CallInfo, output: Record<string, unknown> | undefined): AuditResource[] | undefined {
  const arns = new Set<string>();
  const meta = output?.KeyMetadata as { Arn?: unknown } | undefined;
  for (const v of [output?.KeyId, output?.SourceKeyId, meta?.Arn]) if (typeof v === 'string' && ARN.test(v)) arns.add(v);
  const input = call.input;
  if (!arns.size && input && call.principal) {
    // A failed call: name the key it asked for when it resolves (metadata lookups are cached).
    const ctx: RequestContext = { principal: call.principal, requestId: call.requestId };
    for (const ref of [input.KeyId, input.TargetKeyId, input.SourceKeyId, input.DestinationKeyId]) {
      if (typeof ref !== 'string') continue;
      try {
        arns.add(resolveKey(deps, ctx, ref).arn);
      } catch {
        /* not a key we can name */
      }
    }
    if (!arns.size && Buffer.isBuffer(input.CiphertextBlob)) {
      try {
        const key = deps.store.getKey(parseCiphertext(input.CiphertextBlob).keyId);
        if (key && key.accountId === call.principal.accountId) arns.add(key.arn);
      } catch {
        /* not our blob */
      }
    }
  }
  if (!arns.size) return undefined;
  return [...arns].map((ARN) => ({ ARN, type: KEY_TYPE, accountId: ARN.split(':')[4] }));
}

function materialIdOf(deps: KmsDeps, output: Record<string, unknown> | undefined): string | undefined {
  if (!output) return undefined;
  for (const v of [output.KeyMaterialId, output.DestinationKeyMaterialId]) if (typeof v === 'string') return v;
  // Encrypt does not return it: the symmetric blob names the key and material version.
  const blob = output.CiphertextBlob;
  if (!Buffer.isBuffer(blob)) return undefined;
  try {
    const parsed = parseCiphertext(blob);
    const key = deps.store.getKey(parsed.keyId);
    if (!key || key.keySpec !== 'SYMMETRIC_DEFAULT') return undefined;
    return deps.store.getMaterial(parsed.keyId, parsed.version)?.materialId;
  } catch {
    return undefined;
  }
}
