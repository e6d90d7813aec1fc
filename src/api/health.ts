import express from 'express';
import type { Token } from '../hsm/token.js';

/** Liveness (the process answers) and readiness (the token answers) for supervisors and load balancers. */
export function healthRouter(token: Token): express.Router {
  const router = express.Router();
  router.get('/health/live', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/health/ready', (_req, res) => {
    const ready = token.isHealthy();
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      token: { label: token.label, state: token.state, recoveries: token.recoveries, sessions: token.poolStats() },
    });
  });
  return router;
}
