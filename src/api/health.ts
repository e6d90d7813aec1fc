import express from 'express';
import type { Readiness } from '../kms/health.js';

/**
 * Liveness (the process answers) and readiness (the default token answers) for supervisors and
 * load balancers. Custom key stores are listed with their connection state but do not decide
 * readiness: a disconnected or failed store affects only its own keys.
 */
export function healthRouter(readiness: () => Readiness): express.Router {
  const router = express.Router();
  router.get('/health/live', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/health/ready', (_req, res) => {
    const { ready, token, customKeyStores } = readiness();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', token, customKeyStores });
  });
  return router;
}
