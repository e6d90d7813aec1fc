import type { z } from 'zod';
import type { Authz } from '../authz/engine.js';
import type { Audit } from '../audit/types.js';
import type { Clock } from '../clock.js';
import type { Token } from '../hsm/token.js';
import type { Logger } from '../log.js';
import type { KeyStoreRegistry } from './key-store-registry.js';
import type { RegionDirectory } from './regions.js';
import type { MetadataStore } from '../store/types.js';

/** Who is calling, as established by a front door's authentication. */
export interface Principal {
  type: 'Root' | 'IAMUser' | 'AssumedRole';
  arn: string;
  accountId: string;
  accessKeyId: string;
}

export interface RequestContext {
  principal: Principal;
  requestId: string;
  sourceIp?: string | undefined;
  userAgent?: string | undefined;
  /** The decoded request: authorization reads condition-key facts from it (encryption context, algorithms, grant tokens). */
  input?: Readonly<Record<string, unknown>> | undefined;
  /** The authorization engine for this request; without one, authorize() allows account roots only. */
  authz?: Authz | undefined;
  /** Whether the request came over TLS (aws:SecureTransport). */
  secureTransport?: boolean | undefined;
}

/** What every operation can use. The core knows nothing of HTTP. */
export interface KmsDeps {
  store: MetadataStore;
  token: Token;
  clock: Clock;
  region: string;
  log: Logger;
  /** Authorization engine (policies, grants); front doors put it on each RequestContext. */
  authz?: Authz | undefined;
  /** The audit trail: front doors record each call, background jobs each action (src/audit). */
  audit: Audit;
  /**
   * Custom key stores (issue #6): the tokens of connected stores. `token` above is the default
   * token; a key with a customKeyStoreId lives in its store's token (see token-for.ts).
   */
  keyStores?: KeyStoreRegistry | undefined;
  /** Every region this deployment serves, this one included (issue 13); set by the daemon. */
  regions?: RegionDirectory | undefined;
  /** Regions served by peer deployments, and the calls of the peer protocol (src/api/peer). */
  peers?: PeerLink | undefined;
}

/** The peer protocol as the core sees it: no HTTP, only regions and operations. */
export interface PeerLink {
  serves(region: string): boolean;
  regions(): string[];
  /** Calls a peer operation (peer-replication.ts) at the deployment serving `region`. */
  call(region: string, operation: string, input: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** Whether a principal may call the peer operations (credentials issued to a peer). */
  isPeerPrincipal?(arn: string): boolean;
}

export interface Operation<S extends z.ZodType = z.ZodType> {
  schema: S;
  handler(deps: KmsDeps, ctx: RequestContext, input: z.output<S>): Promise<object> | object;
}

/** Keeps each operation's schema and handler together, with the input type inferred from the schema. */
export function operation<S extends z.ZodType>(
  schema: S,
  handler: (deps: KmsDeps, ctx: RequestContext, input: z.output<S>) => Promise<object> | object,
): Operation<S> {
  return { schema, handler };
}
