import { randomUUID } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import express from 'express';
import { adminRouter } from './api/admin/router.js';
import { awsJsonRouter } from './api/aws-json/router.js';
import { healthRouter } from './api/health.js';
import { CredentialRegistry } from './authz/credentials.js';
import { Authz } from './authz/engine.js';
import { SecretBox } from './authz/secret-box.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { closeModules } from './hsm/module.js';
import { Token } from './hsm/token.js';
import type { KmsDeps } from './kms/context.js';
import { KeyStoreRegistry } from './kms/key-store-registry.js';
import { reconcile, type ReconcileReport } from './kms/reconcile.js';
import { reconcileImportKeys } from './kms/import.js';
import { LifecycleScheduler } from './kms/scheduler.js';
import type { Logger } from './log.js';
import { SqliteStore } from './store/sqlite.js';

export interface Daemon {
  deps: KmsDeps;
  token: Token;
  /** Custom key stores: the tokens of connected stores and their connection states. */
  keyStores: KeyStoreRegistry;
  reconciled: ReconcileReport;
  /** Key-lifecycle scheduler (rotation, deletion, expiry); already started. */
  scheduler: LifecycleScheduler;
  /** Bound TCP port (useful when configured as 0). */
  port: number;
  socketPath: string;
  stop(): Promise<void>;
}

/**
 * Assembles and starts the daemon: token (login, session pool), metadata store, start-up
 * reconciliation, then the listeners on loopback TCP and a 0600 Unix socket.
 */
export async function startDaemon(config: Config, log: Logger, clock: Clock = systemClock): Promise<Daemon> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const token = Token.open(
    {
      module: config.hsm.module,
      tokenLabel: config.hsm.tokenLabel,
      pin: config.hsm.pin,
      maxSessions: config.hsm.maxSessions,
      sessionWaitMs: config.hsm.sessionWaitMs,
      maxWaiters: config.hsm.maxWaiters,
      modifiableFalse: config.hsm.capabilities.modifiableFalse,
      moduleEnv: config.hsm.moduleEnv,
    },
    log,
  );
  const store = new SqliteStore(join(config.dataDir, 'metadata.sqlite'));
  const deps: KmsDeps = { store, token, clock, region: config.region, log };
  const reconciled = await reconcile(deps);
  log.info({ ...reconciled }, 'start-up reconciliation done');
  const importKeys = await reconcileImportKeys(deps);
  if (importKeys.orphansDestroyed || importKeys.rowsRemoved) log.info({ ...importKeys }, 'import wrapping keys reconciled');
  // One tick before serving catches up on what fell due while the daemon was down.
  // One SecretBox for credentials and key store passwords: both seal under the same token key.
  const secretBox = new SecretBox(token);
  // Custom key stores the operator left connected connect again, each reconciled with its token.
  const keyStores = new KeyStoreRegistry(deps, { hsms: config.hsms, secretBox });
  deps.keyStores = keyStores;
  await keyStores.start();
  const scheduler = new LifecycleScheduler(deps, config.schedulerIntervalMs);
  await scheduler.runOnce();

  const credentials = new CredentialRegistry(store, secretBox, log);
  credentials.addRoot(config.accountId, config.admin.accessKeyId, config.admin.secretAccessKey);
  await credentials.load();
  deps.authz = new Authz({ store, clock, region: config.region, log }, credentials);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((_req, res, next) => {
    res.setHeader('x-amzn-RequestId', randomUUID());
    // The daemon's time is the injected clock (SigV4 checks use it); SDKs correct skew from Date.
    res.setHeader('Date', clock.now().toUTCString());
    next();
  });
  app.use(healthRouter(token, keyStores));
  app.use(awsJsonRouter({ deps, credentials, clock, region: config.region, log }));
  app.use((_req, res) => {
    res.status(404).json({ __type: 'UnknownOperationException', message: 'No such resource. The AWS KMS API is served at POST /.' });
  });

  let stopping = false;
  const tcp = drainable(createServer(app), () => stopping);
  // The Unix socket (0600) also serves the admin interface; TCP never does.
  const unixApp = express();
  unixApp.disable('x-powered-by');
  unixApp.set('etag', false);
  unixApp.use(adminRouter({ credentials, defaultAccountId: config.accountId, log }));
  unixApp.use(app);
  const unix = drainable(createServer(unixApp), () => stopping);
  await listen(tcp, () => tcp.listen(config.port, config.host));
  await listenOnSocket(unix, config.socketPath);
  const address = tcp.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  log.info({ host: config.host, port, socket: config.socketPath, token: config.hsm.tokenLabel }, 'p11kms listening');
  scheduler.start();

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      stopping = true;
      log.info('shutting down: no new connections, finishing in-flight requests');
      await Promise.all([close(tcp), close(unix)]);
      await scheduler.stop();
      await keyStores.stop();
      token.close();
      store.close();
      closeModules();
      log.info('stopped');
    })());
  return { deps, token, keyStores, reconciled, scheduler, port, socketPath: config.socketPath, stop };
}

function listen(server: Server, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
    start();
  });
}

/** Creates the socket with mode 0600 from the start (umask), replacing a stale socket file. */
async function listenOnSocket(server: Server, path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    /* no stale socket */
  }
  const previous = process.umask(0o177);
  try {
    await listen(server, () => server.listen(path));
  } finally {
    process.umask(previous);
  }
  chmodSync(path, 0o600);
}

/**
 * During shutdown a keep-alive connection is closed as soon as its response is sent, instead of
 * holding the server open until the keep-alive timeout.
 */
function drainable(server: Server, stopping: () => boolean): Server {
  server.on('request', (_req, res) => {
    res.once('finish', () => {
      if (stopping()) setImmediate(() => server.closeIdleConnections());
    });
  });
  return server;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive connections with no request in flight would hold close() open.
    server.closeIdleConnections();
  });
}
