import express from 'express';
import type { Readiness } from '../kms/health.js';

/**
 * Liveness (the process answers) and readiness for supervisors and load balancers: 503 while
 * the node would fail every request (the default token, a shared database, a fail-closed audit
 * trail; see src/kms/health.ts), 200 again by itself once they answer. Custom key stores are
 * listed with their connection state but do not decide readiness: a disconnected or failed
 * store affects only its own keys.
 */
export function healthRouter(readiness: () => Readiness): express.Router {
  const router = express.Router();
  router.get('/health/live', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/health/ready', (_req, res) => {
    const { ready, token, customKeyStores, database, audit } = readiness();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', token, customKeyStores, database, audit });
  });
  return router;
}
