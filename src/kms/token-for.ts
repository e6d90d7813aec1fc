import { Errors, type KmsError } from '../errors.js';
import type { Token } from '../hsm/token.js';
import type { KeyRecord } from '../store/types.js';
import type { KmsDeps } from './context.js';

/**
 * Routing of token calls by the key's store: the default token, or the token of the custom key
 * store that holds the key. Every call that acts on a key's token objects goes through here.
 * A store that is not CONNECTED refuses with KMSInvalidStateException (AWS's answer for a key
 * in a disconnected custom key store).
 */
export function tokenFor(deps: KmsDeps, key: Pick<KeyRecord, 'customKeyStoreId'>): Token {
  if (key.customKeyStoreId === undefined) return deps.token;
  const token = deps.keyStores?.connectedToken(key.customKeyStoreId);
  if (!token) throw notConnected(key.customKeyStoreId);
  return token;
}

/**
 * The key as callers see it: a key in a custom key store that is not CONNECTED is Unavailable,
 * unless it is PendingDeletion (AWS: "the key state of KMS keys in the custom key store is
 * Unavailable, unless they are PendingDeletion"). The stored state is kept, so reconnecting
 * restores Enabled or Disabled.
 */
export function withStoreState(deps: KmsDeps, key: KeyRecord): KeyRecord {
  if (key.customKeyStoreId === undefined || key.state === 'PendingDeletion' || key.state === 'Creating') return key;
  if (deps.keyStores?.isConnected(key.customKeyStoreId)) return key;
  return { ...key, state: 'Unavailable' };
}

/** What requests get for a key whose store is not connected (AWS: KMSInvalidStateException). */
export function notConnected(id: string): KmsError {
  return Errors.invalidState(`The custom key store ${id} that holds this KMS key is not connected.`);
}
