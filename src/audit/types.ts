import type { Principal } from '../model/identity.js';

/**
 * The audit interface every front door (AWS JSON now; XKS and the admin CLI later) and every
 * background job (rotation, deletion, token reconnects) calls: one event per call or action.
 */
export interface Audit {
  /**
   * Appends one event to the trail. Resolves once the event is as durable as the configured
   * durability promises ('fsync': on disk; 'write': handed to the OS); rejects with
   * AuditUnavailable when it could not be written. Parameters are sanitized here, so callers
   * may pass raw request input: blobs (plaintexts, ciphertexts, data keys, messages, key
   * material), tokens, secrets, passwords and PINs are dropped before anything is written.
   */
  record(event: AuditEventInput): Promise<void>;
  /**
   * Resolves true when the trail can take events now (trying to recover from an earlier write
   * failure first, at most once a second). Fail-closed callers ask before doing any work.
   */
  ready(): Promise<boolean>;
  /** When true, callers must refuse to perform or answer operations whose event was not written. */
  readonly failClosed: boolean;
}

/** Where the audit trail stands: the last record written and whether writing currently works. */
export interface AuditStatus {
  enabled: boolean;
  healthy: boolean;
  seq: number;
  file: string | undefined;
}

export type AuditEventType = 'AwsApiCall' | 'AwsServiceEvent';

export interface AuditResource {
  ARN: string;
  type: string;
  accountId?: string | undefined;
}

/** Who acted, when it was not an authenticated principal. */
export interface AuditActor {
  /** 'AWSService' for the daemon's own background jobs; 'Unknown' for callers that failed authentication. */
  type: 'AWSService' | 'Unknown';
  /** What invoked a service event, e.g. 'p11kms' or 'p11kms-admin'. */
  invokedBy?: string | undefined;
  /** The access key id a failed request claimed (never verified). */
  accessKeyId?: string | undefined;
  accountId?: string | undefined;
}

export interface AuditEventInput {
  /** The operation or action, e.g. 'Encrypt', 'RotateKey', 'DeleteKey', 'TokenReconnected'. */
  eventName: string;
  /** 'AwsApiCall' (default) for calls, 'AwsServiceEvent' for the daemon's own actions. */
  eventType?: AuditEventType | undefined;
  /** Defaults to 'kms.amazonaws.com', as CloudTrail records for KMS. */
  eventSource?: string | undefined;
  /** Defaults to the trail's clock. */
  time?: Date | undefined;
  principal?: Principal | AuditActor | undefined;
  sourceIp?: string | undefined;
  userAgent?: string | undefined;
  requestId?: string | undefined;
  /** Defaults to a new UUID; a front door passes its own when it reports the id elsewhere. */
  eventId?: string | undefined;
  /** Raw input (sanitized by the trail). */
  requestParameters?: Record<string, unknown> | null | undefined;
  /** Raw output (sanitized by the trail); null for data-plane calls, as CloudTrail does. */
  responseElements?: Record<string, unknown> | null | undefined;
  resources?: AuditResource[] | undefined;
  /** Defaults from the event name (Describe/List/Get and cryptographic calls are read-only). */
  readOnly?: boolean | undefined;
  errorCode?: string | undefined;
  errorMessage?: string | undefined;
  /** The region the event happened in; defaults to the trail's (the deployment's default region). */
  awsRegion?: string | undefined;
  /** e.g. { keyMaterialId } */
  additionalEventData?: Record<string, unknown> | undefined;
}

/** Thrown by Audit.record when the event could not be written. */
export class AuditUnavailable extends Error {}

/** For a daemon configured without an audit trail (and for tests that build KmsDeps by hand). */
export const disabledAudit: Audit = {
  record: () => Promise.resolve(),
  ready: () => Promise.resolve(true),
  failClosed: false,
};
