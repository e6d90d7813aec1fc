import express from 'express';
import type { Token } from '../hsm/token.js';
import type { KeyStoreRegistry } from '../kms/key-store-registry.js';

/**
 * Liveness (the process answers) and readiness (the default token answers) for supervisors and
 * load balancers. Custom key stores are listed with their connection state but do not decide
 * readiness: a disconnected or failed store affects only its own keys.
 */
export function healthRouter(token: Token, keyStores?: KeyStoreRegistry): express.Router {
  const router = express.Router();
  router.get('/health/live', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/health/ready', (_req, res) => {
    const ready = token.isHealthy();
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      token: { label: token.label, state: token.state, recoveries: token.recoveries, sessions: token.poolStats() },
      customKeyStores: keyStores?.summary(),
    });
  });
  return router;
}
