import express from 'express';
import type { AuditStatus } from '../../audit/types.js';
import type { Readiness } from '../../kms/health.js';
import type { UnusedKey } from '../../kms/key-usage.js';

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
  /** Keys of an account not used for `days` days (the core's findUnusedKeys); for `p11kms keys unused`. */
  unusedKeys: (accountId: string | undefined, days: number) => UnusedKey[];
}

export function statusRouter(s: StatusSources): express.Router {
  const router = express.Router();
  router.get('/admin/v1/status', (_req, res) => {
    const { ready, token, customKeyStores, database } = s.readiness();
    res.json({
      ready,
      pid: process.pid,
      node: process.version,
      uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
      token,
      customKeyStores: customKeyStores ?? [],
      database,
      audit: s.audit(),
      listeners: s.listeners(),
    });
  });
  router.get('/admin/v1/keys/unused', (req, res) => {
    const days = Number(req.query.days);
    const account = typeof req.query.accountId === 'string' ? req.query.accountId : undefined;
    if (!Number.isInteger(days) || days < 0) {
      res.status(400).json({ error: 'days must be a whole number of days, 0 or more.' });
      return;
    }
    if (account !== undefined && !/^\d{12}$/.test(account)) {
      res.status(400).json({ error: 'accountId must be 12 digits.' });
      return;
    }
    res.json({ days, keys: s.unusedKeys(account, days) });
  });
  return router;
}
