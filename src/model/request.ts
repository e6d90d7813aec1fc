import type { Principal } from './identity.js';

/**
 * One request as a front door hands it to the core. `Engine` is the authorization engine the
 * request carries: the core fixes it to src/authz's Authz (kms/context.ts); layers that only
 * read the request's facts (authorization's own evaluation, audit) leave it unknown, so this
 * plain type needs nothing of the layers.
 */
export interface RequestContext<Engine = unknown> {
  principal: Principal;
  requestId: string;
  sourceIp?: string | undefined;
  userAgent?: string | undefined;
  /** The decoded request: authorization reads condition-key facts from it (encryption context, algorithms, grant tokens). */
  input?: Readonly<Record<string, unknown>> | undefined;
  /** The authorization engine for this request; without one, authorize() allows account roots only. */
  authz?: Engine | undefined;
  /** Whether the request came over TLS (aws:SecureTransport). */
  secureTransport?: boolean | undefined;
}
