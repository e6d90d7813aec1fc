import cluster from 'node:cluster';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';

/**
 * All cores of one host (README, High availability): with database.workers > 1 the first
 * process is a supervisor that forks that many daemons (node:cluster). They share the listening
 * TCP ports (the supervisor hands connections out round-robin), PostgreSQL and the token; each
 * is a node of its own, `<nodeId>-w<n>`, with its own token sessions, caches, audit chain
 * (`<audit.dir>/<node id>`) and admin socket (the first worker's is the configured one).
 * A worker that dies is replaced; SIGTERM stops them all.
 */

/** True in the supervisor: it forked the workers and must not start a daemon itself. */
export function superviseWorkers(config: Config, log: Logger): boolean {
  const workers = config.database?.workers ?? 1;
  if (workers <= 1 || !cluster.isPrimary) return false;
  let stopping = false;
  const fork = (slot: number) => {
    const w = cluster.fork({ P11KMS_WORKER_SLOT: String(slot) });
    w.on('exit', (code, signal) => {
      if (stopping) return;
      log.error({ slot, code, signal }, 'worker process ended; starting another');
      setTimeout(() => fork(slot), 200);
    });
  };
  for (let slot = 1; slot <= workers; slot++) fork(slot);
  log.info({ workers }, 'p11kms supervisor: started the worker processes');
  const stop = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
    const done = () => Object.keys(cluster.workers ?? {}).length === 0 && process.exit(0);
    cluster.on('exit', done);
    done();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGTERM'));
  return true;
}

/** A worker's own node id, audit directory and admin socket. */
export function workerConfig(config: Config): Config {
  const slot = process.env.P11KMS_WORKER_SLOT;
  if (!cluster.isWorker || !slot || !config.database) return config;
  const nodeId = `${config.database.nodeId}-w${slot}`;
  return {
    ...config,
    database: { ...config.database, nodeId },
    audit: { ...config.audit, dir: join(config.audit.dir, nodeId) },
    socketPath: slot === '1' ? config.socketPath : `${config.socketPath}.w${slot}`,
  };
}
