import express from 'express';
import type { AuditTrail } from '../../audit/trail.js';
import type { Token } from '../../hsm/token.js';
import type { KeyStoreRegistry } from '../../kms/key-store-registry.js';

/**
 * GET /admin/v1/status on the daemon's Unix socket: what `p11kms status` prints. Like the
 * health routes it changes nothing and is not audited, so it answers while a fail-closed audit
 * trail is down (which is when an operator asks).
 */
export interface StatusSources {
  token: Token;
  keyStores: KeyStoreRegistry;
  audit: AuditTrail | undefined;
  listeners: () => { tcp: string; socket: string; sidecars: string[]; xks?: string | undefined };
  startedAt: number;
}

export function statusRouter(s: StatusSources): express.Router {
  const router = express.Router();
  router.get('/admin/v1/status', (_req, res) => {
    res.json({
      ready: s.token.isHealthy(),
      pid: process.pid,
      node: process.version,
      uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
      token: { label: s.token.label, state: s.token.state, recoveries: s.token.recoveries, sessions: s.token.poolStats() },
      customKeyStores: s.keyStores.summary(),
      audit: s.audit ? s.audit.status() : { enabled: false },
      listeners: s.listeners(),
    });
  });
  return router;
}
