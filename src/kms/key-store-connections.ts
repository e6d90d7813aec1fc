import type { NamedHsm } from '../config.js';
import type { Token } from '../hsm/token.js';
import type { CustomKeyStoreRecord } from '../store/key-stores.js';

/**
 * What the core asks of the custom key store registry (key-store-registry.ts implements it).
 * KmsDeps holds the registry by this interface because the registry itself takes KmsDeps: the
 * interface keeps the two files out of an import circle.
 */
export interface KeyStoreConnections {
  readonly hsms: Record<string, NamedHsm>;
  /** The store's one (cluster-wide) ConnectionState, as DescribeCustomKeyStores reports it. */
  status(id: string): { state: ConnectionState; errorCode?: ConnectionErrorCode | undefined };
  summary(): KeyStoreSummary[];
  /** This node has sessions to the store's token and serves its keys. */
  isConnected(id: string): boolean;
  connectedToken(id: string): Token | undefined;
  sealPassword(storeId: string, password: string): Promise<Buffer>;
  start(waitMs?: number): Promise<void>;
  connect(id: string): void;
  disconnect(id: string): Promise<void>;
  forget(id: string): void;
  /** Connect and disconnect steps whose node is gone, finished by the leader. */
  finishAbandoned(): Promise<void>;
  stop(): Promise<void>;
}

export type ConnectionState = CustomKeyStoreRecord['connectionState'];
export type ConnectionErrorCode =
  | 'INVALID_CREDENTIALS'
  | 'CLUSTER_NOT_FOUND'
  | 'NETWORK_ERRORS'
  | 'INTERNAL_ERROR'
  | 'USER_LOCKED_OUT'
  | 'USER_LOGGED_IN';

/**
 * One node's own sessions to a store's token (health, metrics), beside the shared state:
 * CONNECTED (it serves the store's keys), CONNECTING (opening), UNREACHABLE (it cannot open or
 * lost the token while the store should be connected: its keys are refused on this node, and it
 * retries), DISCONNECTED (the shared state wants no sessions).
 */
export type LocalConnectionState = 'CONNECTED' | 'CONNECTING' | 'UNREACHABLE' | 'DISCONNECTED';

export interface KeyStoreSummary {
  id: string;
  state: ConnectionState;
  errorCode?: ConnectionErrorCode | undefined;
  local: { state: LocalConnectionState; errorCode?: ConnectionErrorCode | undefined };
}

/** ConnectionState and ConnectionErrorCode (only with FAILED) from the store's row. */
export function sharedStatus(rec: CustomKeyStoreRecord): { state: ConnectionState; errorCode?: ConnectionErrorCode | undefined } {
  return {
    state: rec.connectionState,
    errorCode: rec.connectionState === 'FAILED' ? (rec.connectionErrorCode as ConnectionErrorCode | undefined) : undefined,
  };
}
