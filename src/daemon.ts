import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import { adminRouter } from './api/admin/router.js';
import { statusRouter } from './api/admin/status.js';
import { startXksServer, type XksAuditEvent, type XksServer } from './api/xks/server.js';
import { awsJsonHandler } from './api/aws-json/router.js';
import { restWithSigV4, startSidecars, type SidecarListeners } from './api/rest/listeners.js';
import { KeyUsageRecorder } from './kms/key-usage-recorder.js';
import { findUnusedKeys } from './kms/key-usage.js';
import { AuditTrail } from './audit/trail.js';
import { disabledAudit, type Audit } from './audit/types.js';
import { healthRouter } from './api/health.js';
import { CredentialRegistry } from './authz/credentials.js';
import { Authz } from './authz/engine.js';
import { SecretBox } from './kms/secret-box.js';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { closeModules } from './hsm/module.js';
import { Token } from './hsm/token.js';
import type { KmsDeps } from './kms/context.js';
import { databaseHealth, readiness } from './kms/health.js';
import { KeyStoreRegistry } from './kms/key-store-registry.js';
import { reconcile, type ReconcileReport } from './kms/reconcile.js';
import { auditInRegion, RegionDirectory } from './kms/regions.js';
import { PeerClient } from './api/peer/client.js';
import { reconcileImportKeys } from './kms/import.js';
import { LifecycleScheduler } from './kms/scheduler.js';
import type { Logger } from './log.js';
import { followCredentialChanges, openMetadataStore, openRegionStore, openSealer, startLeadership } from './cluster/node.js';
import { metricsRouter } from './metrics/http.js';
import { httpDate } from './api/http-date.js';
import { clientPrincipalCheck } from './net/client-principals.js';
import { startListener } from './net/listener.js';
import { bindMetrics, observeTokenCall, unbindMetrics } from './metrics/metrics.js';

export interface Daemon {
  deps: KmsDeps;
  token: Token;
  /** Custom key stores: the tokens of connected stores and their connection states. */
  keyStores: KeyStoreRegistry;
  reconciled: ReconcileReport;
  /** Key-lifecycle scheduler (rotation, deletion, expiry) of the default region; already started. */
  scheduler: LifecycleScheduler;
  /** Every region served (the default region's deps are `deps`). */
  regions: RegionDirectory;
  /** The schedulers of the other regions, in the order of config.regions. */
  regionSchedulers: LifecycleScheduler[];
  /** The audit trail (undefined when disabled in the configuration). */
  audit: AuditTrail | undefined;
  /** Bound TCP port (useful when configured as 0). */
  port: number;
  /** The AWS API listener's scheme: 'https' when tls is configured. */
  scheme: 'https' | 'http';
  socketPath: string;
  /** The REST sidecar sockets (config.sidecars). */
  sidecarPaths: string[];
  /** Reads the TLS certificate files of the AWS API and XKS listeners again (SIGHUP). */
  reloadTls(): { api: boolean; xks: boolean };
  /** The XKS proxy listener, when configured (config.xks). */
  xks?: XksServer | undefined;
  stop(): Promise<void>;
}

export interface DaemonHooks {
  /** Receives one record per XKS proxy request (requestMetadata included); the audit trail plugs in here. */
  onXksAudit?: (event: XksAuditEvent) => void;
}

/**
 * Assembles and starts the daemon: token (login, session pool), metadata store, start-up
 * reconciliation, then the listeners on loopback TCP and a 0600 Unix socket.
 */
export async function startDaemon(
  config: Config,
  log: Logger,
  clock: Clock = systemClock,
  hooks: DaemonHooks = {},
): Promise<Daemon> {
  const startedAt = Date.now();
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  // Set once the trail is open; the token reports reconnects to it.
  let audit: Audit = disabledAudit;
  const openToken = (hsm: Config['hsm']) =>
    Token.open(
      {
        module: hsm.module,
        tokenLabel: hsm.tokenLabel,
        pin: hsm.pin,
        maxSessions: hsm.maxSessions,
        sessionWaitMs: hsm.sessionWaitMs,
        maxWaiters: hsm.maxWaiters,
        capabilities: hsm.capabilities,
        moduleEnv: hsm.moduleEnv,
        libraryParameters: hsm.libraryParameters,
        workerThreads: hsm.workerThreads,
        callTimeoutMs: hsm.callTimeoutMs,
        observe: config.metrics.enabled ? observeTokenCall : undefined,
        onRecovered: (attempts) => {
          audit
            .record({ eventName: 'TokenReconnected', eventType: 'AwsServiceEvent', readOnly: false, additionalEventData: { token: hsm.tokenLabel, attempts } })
            .catch(() => undefined);
        },
      },
      log,
    );
  const token = openToken(config.hsm);
  const store = await openMetadataStore(config, log);
  const trail = config.audit.enabled
    ? await AuditTrail.open({
        ...config.audit,
        region: config.region,
        accountId: config.accountId,
        sealer: await openSealer(store, token, config.database?.nodeId),
        nodeId: config.database?.nodeId,
        clock,
        log,
      })
    : undefined;
  audit = trail ?? disabledAudit;
  const keyUsage = new KeyUsageRecorder(store, log);
  const deps: KmsDeps = { store, token, clock, region: config.region, log, audit, keyUsage };
  // Further regions (issue 13): each its own store (a SQLite file under dataDir/regions/<region>,
  // or the region's schema of the shared PostgreSQL database), and its own token or the main one.
  // All are opened before any reconciliation, because regions that share a token share token
  // objects (see RegionDirectory.sharingToken).
  const regions = new RegionDirectory(config.region);
  regions.add(deps);
  for (const r of config.regions.slice(1)) {
    const regionLog = log.child({ region: r.name });
    const regionStore = await openRegionStore(config, r.name, store, regionLog);
    regions.add({
      store: regionStore,
      keyUsage: new KeyUsageRecorder(regionStore, log),
      token: r.mainToken ? token : openToken(r.hsm),
      clock,
      region: r.name,
      log: regionLog,
      audit: auditInRegion(audit, r.name),
    });
  }
  // Regions served by peer sites (two sites): the replication protocol's client.
  const servedTwice = Object.keys(config.peers).filter((r) => regions.get(r));
  if (servedTwice.length) throw new Error(`peers: ${servedTwice.join(', ')} is served by this deployment itself`);
  if (Object.keys(config.peers).length || config.peerPrincipals.length) {
    const peers = new PeerClient(config.peers, clock, config.peerPrincipals);
    for (const d of regions.all()) d.peers = peers;
  }
  const otherRegions = regions.all().slice(1);
  for (const d of otherRegions) {
    const report = await reconcile(d);
    log.info({ region: d.region, ...report }, 'start-up reconciliation done');
  }
  const reconciled = await reconcile(deps);
  log.info({ ...reconciled }, 'start-up reconciliation done');
  const importKeys = await reconcileImportKeys(deps);
  if (importKeys.orphansDestroyed || importKeys.rowsRemoved) log.info({ ...importKeys }, 'import wrapping keys reconciled');
  // One SecretBox for credentials and key store passwords: both seal under the same token key.
  const secretBox = new SecretBox(token);
  // Custom key stores the operator left connected connect again, each reconciled with its token.
  const keyStores = new KeyStoreRegistry(deps, {
    hsms: config.hsms, secretBox, observe: config.metrics.enabled ? observeTokenCall : undefined,
  });
  deps.keyStores = keyStores;
  await keyStores.start();
  // One tick before serving catches up on what fell due while the daemon was down.
  const scheduler = new LifecycleScheduler(deps, config.schedulerIntervalMs);
  await scheduler.runOnce();
  const regionSchedulers = otherRegions.map((d) => new LifecycleScheduler(d, config.schedulerIntervalMs));
  for (const s of regionSchedulers) await s.runOnce();
  // With a shared store only the leader runs jobs (every region's); the first attempt (and its ticks) happens here.
  const leadership = await startLeadership(deps, scheduler, log, otherRegions.map((d, i) => ({ deps: d, scheduler: regionSchedulers[i]! })));
  if (reconciled.pendingRemoved || reconciled.keysRemoved || reconciled.orphansDestroyed || reconciled.missingObjects) {
    await audit.record({ eventName: 'ReconcileKeyStore', eventType: 'AwsServiceEvent', readOnly: false, additionalEventData: { ...reconciled } });
  }
  if (config.metrics.enabled) bindMetrics({ token, store, audit: trail && (() => trail.status()), keyStores, database: () => databaseHealth(store) });

  const credentials = new CredentialRegistry(store, secretBox, log);
  credentials.addRoot(config.accountId, config.admin.accessKeyId, config.admin.secretAccessKey);
  await credentials.load();
  followCredentialChanges(store, credentials, log);
  for (const d of regions.all()) d.authz = new Authz({ store: d.store, clock, region: d.region, log }, credentials);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((_req, res, next) => {
    res.setHeader('x-amzn-RequestId', randomUUID());
    next();
  });
  const ready = () => readiness(token, keyStores, { store, audit: trail });
  app.use(healthRouter(ready));
  if (config.metrics.enabled) app.use(metricsRouter(config.metrics.bearerToken));
  app.use((_req, res) => {
    res.status(404).json({ __type: 'UnknownOperationException', message: 'No such resource. The AWS KMS API is served at POST /.' });
  });

  // The AWS API (POST /) is served before express; everything else goes to the app.
  const tls = config.listener.tls;
  const aws = awsJsonHandler({ deps, credentials, clock, region: config.region, log, regions, clientPrincipal: clientPrincipalCheck(tls?.clientPrincipals) });
  // The REST routes (/v1/...) on TCP need SigV4 like the AWS API (and the client certificate's
  // principal under mutual TLS), or are off (config rest.tcp).
  const restTcp = config.rest.tcp === 'sigv4'
    ? restWithSigV4({ deps, log, credentials, clock, region: config.region, clientPrincipal: clientPrincipalCheck(tls?.clientPrincipals) })
    : undefined;
  // The daemon's time is the injected clock (SigV4 checks use it); SDKs correct their skew from Date.
  // The AWS handler writes its own Date with its other headers (see send() in its router).
  const date = httpDate(clock);
  const serveWith = (rest: (req: IncomingMessage, res: ServerResponse) => void) => (req: IncomingMessage, res: ServerResponse) => {
    aws(req, res, () => {
      res.setHeader('Date', date());
      if (restTcp) restTcp(req, res, () => rest(req, res));
      else rest(req, res);
    });
  };

  if (!tls && config.listener.plainHttpBehindTlsProxy) {
    log.warn({ host: config.host }, 'plainHttpBehindTlsProxy: the AWS API serves plain HTTP on a non-loopback address; a TLS proxy must be its only client');
  }
  // The Unix socket (0600) also serves the admin interface; TCP never does.
  const unixApp = express();
  unixApp.disable('x-powered-by');
  unixApp.set('etag', false);
  unixApp.use(adminRouter({ credentials, defaultAccountId: config.accountId, log, audit }));
  unixApp.use(statusRouter({
    readiness: ready, audit: () => trail?.status() ?? { enabled: false }, startedAt, listeners: () => listeners,
    unusedKeys: (accountId, days) => findUnusedKeys(deps, accountId ?? config.accountId, days),
  }));
  unixApp.use(app);
  const tcp = await startListener({ name: 'AWS API', address: { host: config.host, port: config.port }, tls, handler: serveWith(app), log });
  const unix = await startListener({ name: 'Unix socket', address: { socketPath: config.socketPath }, handler: serveWith(unixApp), log }).catch(async (e: unknown) => {
    await tcp.stop();
    throw e;
  });
  const port = tcp.port;
  log.info({ host: config.host, port, scheme: tcp.scheme, mtls: !!tls?.clientCa, socket: config.socketPath, token: config.hsm.tokenLabel }, 'p11kms listening');
  let xks: XksServer | undefined;
  let sidecars: SidecarListeners | undefined;
  try {
    sidecars = await startSidecars({ deps, log, clock }, config.sidecars);
    xks = config.xks
      ? await startXksServer({ deps, config: config.xks, accountId: config.accountId, clock, log, onAudit: hooks.onXksAudit })
      : undefined;
  } catch (e) {
    await Promise.all([tcp.stop(), unix.stop(), sidecars?.close()]);
    await leadership?.stop();
    token.close();
    store.close();
    throw e;
  }
  scheduler.start();
  for (const s of regionSchedulers) s.start();
  const listeners = {
    tcp: `${config.host}:${port}`, socket: config.socketPath, sidecars: sidecars.paths, xks: xks && `${config.xks?.host}:${xks.port}`,
  };
  keyUsage.start();
  for (const d of regions.all().slice(1)) d.keyUsage?.start();

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      log.info('shutting down: no new connections, finishing in-flight requests');
      await Promise.all([tcp.stop(), unix.stop(), sidecars?.close(), xks?.stop()]);
      await leadership?.stop();
      await scheduler.stop();
      for (const s of regionSchedulers) await s.stop();
      await keyStores.stop();
      await trail?.close();
      unbindMetrics();
      keyUsage.stop();
      for (const d of regions.all().slice(1)) d.keyUsage?.stop();
      for (const d of otherRegions) {
        if (d.token !== token) d.token.close();
        await d.store.shared?.release();
        d.store.close();
      }
      token.close();
      await store.shared?.release();
      store.close();
      closeModules();
      log.info('stopped');
    })());
  const reloadTls = () => ({ api: tcp.reloadTls(), xks: xks?.reloadTls() ?? false });
  return {
    deps, token, keyStores, reconciled, scheduler, regions, regionSchedulers, audit: trail, port, scheme: tcp.scheme, socketPath: config.socketPath,
    sidecarPaths: sidecars.paths, reloadTls, xks, stop,
  };
}
