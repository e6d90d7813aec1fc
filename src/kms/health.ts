import type { Token } from '../hsm/token.js';
import type { KeyStoreConnections } from './key-store-connections.js';

/**
 * The readiness report of the daemon: the default token's state and the custom key stores'
 * connection states (the shared one, and this node's own sessions as `local`).
 */
export interface Readiness {
  ready: boolean;
  token: { label: string; state: Token['state']; recoveries: Token['recoveries']; sessions: ReturnType<Token['poolStats']> };
  customKeyStores: ReturnType<KeyStoreConnections['summary']> | undefined;
}

/**
 * Readiness as the core sees it, for the health endpoint (src/api/health.ts), which asks here
 * rather than calling the token: the default token decides readiness; custom key stores are
 * listed with their connection state but affect only their own keys.
 */
export function readiness(token: Token, keyStores?: KeyStoreConnections): Readiness {
  return {
    ready: token.isHealthy(),
    token: { label: token.label, state: token.state, recoveries: token.recoveries, sessions: token.poolStats() },
    customKeyStores: keyStores?.summary(),
  };
}
