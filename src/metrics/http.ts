import { timingSafeEqual } from 'node:crypto';
import express from 'express';
import { isLoopback } from '../net/loopback.js';
import type { Secret } from '../secret.js';
import { registry } from './metrics.js';

export { isLoopback };

function bearerMatches(header: string | undefined, token: Secret | undefined): boolean {
  if (!token || typeof header !== 'string' || !header.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice(7).trim(), 'utf8');
  const expected = Buffer.from(token.reveal(), 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * GET /metrics in the Prometheus text format. Without credentials only on the Unix socket (a
 * socket has no remote address; its 0600 mode is the protection) and from loopback addresses;
 * from anywhere else it needs `Authorization: Bearer <metrics.bearerToken>`, and is refused
 * when no token is configured.
 */
export function metricsRouter(bearerToken: Secret | undefined): express.Router {
  const router = express.Router();
  router.get('/metrics', (req, res) => {
    const remote = req.socket.remoteAddress;
    const local = remote === undefined || isLoopback(remote);
    if (!local && !bearerMatches(req.headers.authorization, bearerToken)) {
      const configured = bearerToken !== undefined;
      res
        .status(configured ? 401 : 403)
        .setHeader('WWW-Authenticate', 'Bearer realm="p11kms-metrics"')
        .json({
          message: configured
            ? 'Metrics need a valid bearer token from this address.'
            : 'Metrics are served only on loopback and the Unix socket unless metrics.bearerToken is configured.',
        });
      return;
    }
    registry.metrics().then(
      (text) => {
        res.setHeader('Content-Type', registry.contentType);
        res.end(text);
      },
      (e: unknown) => res.status(500).json({ message: (e as Error).message }),
    );
  });
  return router;
}
