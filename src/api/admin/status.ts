import express from 'express';
import type { AuditStatus } from '../../audit/types.js';
import type { Readiness } from '../../kms/health.js';

/**
 * GET /admin/v1/status on the daemon's Unix socket: what `p11kms status` prints. Like the
 * health routes it changes nothing and is not audited, so it answers while a fail-closed audit
 * trail is down (which is when an operator asks).
 */
export interface StatusSources {
  readiness: () => Readiness;
  audit: () => AuditStatus | { enabled: false };
  listeners: () => { tcp: string; socket: string; sidecars: string[]; xks?: string | undefined };
  startedAt: number;
}

export function statusRouter(s: StatusSources): express.Router {
  const router = express.Router();
  router.get('/admin/v1/status', (_req, res) => {
    const { ready, token, customKeyStores } = s.readiness();
    res.json({
      ready,
      pid: process.pid,
      node: process.version,
      uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
      token,
      customKeyStores: customKeyStores ?? [],
      audit: s.audit(),
      listeners: s.listeners(),
    });
  });
  return router;
}
