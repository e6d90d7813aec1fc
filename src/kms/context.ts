import type { z } from 'zod';
import type { Authz } from '../authz/engine.js';
import type { Audit } from '../audit/types.js';
import type { Clock } from '../clock.js';
import type { Token } from '../hsm/token.js';
import type { Logger } from '../log.js';
import type { KeyStoreConnections } from './key-store-connections.js';
import type { KeyUsageRecorder } from './key-usage-recorder.js';
import type { MetadataStore } from '../store/types.js';
import type { RequestContext as ModelRequestContext } from '../model/request.js';

export type { Principal } from '../model/identity.js';

/** A request as the core sees it: the model's plain request, carrying the authorization engine. */
export type RequestContext = ModelRequestContext<Authz>;

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
  keyStores?: KeyStoreConnections | undefined;
  /** GetKeyLastUsage (issue #12): front doors note each successful cryptographic call here. */
  keyUsage?: KeyUsageRecorder | undefined;
  /** Every region this deployment serves, this one included (issue 13); set by the daemon. */
  regions?: Regions | undefined;
  /** Regions served by peer deployments, and the calls of the peer protocol (src/api/peer). */
  peers?: PeerLink | undefined;
}

/** The regions one deployment serves (regions.ts, RegionDirectory). */
export interface Regions {
  get(region: string): KmsDeps | undefined;
  names(): string[];
  all(): KmsDeps[];
  /** The other regions whose keys live in the same token as `deps`'s. */
  sharingToken(deps: KmsDeps): KmsDeps[];
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
