import type { NamedHsm } from '../config.js';
import type { Token } from '../hsm/token.js';

/**
 * What the core asks of the custom key store registry (key-store-registry.ts implements it).
 * KmsDeps holds the registry by this interface because the registry itself takes KmsDeps: the
 * interface keeps the two files out of an import circle.
 */
export interface KeyStoreConnections {
  readonly hsms: Record<string, NamedHsm>;
  status(id: string): { state: ConnectionState; errorCode?: ConnectionErrorCode | undefined };
  summary(): { id: string; state: ConnectionState; errorCode?: ConnectionErrorCode | undefined }[];
  isConnected(id: string): boolean;
  connectedToken(id: string): Token | undefined;
  sealPassword(storeId: string, password: string): Promise<Buffer>;
  start(waitMs?: number): Promise<void>;
  connect(id: string): void;
  disconnect(id: string): Promise<void>;
  forget(id: string): void;
  stop(): Promise<void>;
}

export type ConnectionState = 'CONNECTED' | 'CONNECTING' | 'DISCONNECTED' | 'DISCONNECTING' | 'FAILED';
export type ConnectionErrorCode =
  | 'INVALID_CREDENTIALS'
  | 'CLUSTER_NOT_FOUND'
  | 'NETWORK_ERRORS'
  | 'INTERNAL_ERROR'
  | 'USER_LOCKED_OUT'
  | 'USER_LOGGED_IN';
