import { X509Certificate } from 'node:crypto';
import { chmodSync, chownSync, lstatSync, mkdirSync, unlinkSync, unwatchFile, watchFile } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import { createSecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls';
import type { Logger } from '../log.js';
import { readTlsFiles, type TlsSettings } from './tls-settings.js';

/**
 * One listener implementation for every front door: plain HTTP (loopback, Unix socket) or
 * HTTPS with TLS 1.2 minimum (1.3 preferred: Node offers it first), optional mutual TLS with a
 * client CA and subject names, certificate reload without restart, and a drain on stop.
 *
 * Mutual TLS refusals happen where Node itself refuses a certificate that does not chain to the
 * CA: when the handshake completes and before the HTTP layer sees the connection (the subject
 * check is prepended to https' own 'secureConnection' listener), so no request byte is read.
 * A client that sends no certificate at all fails inside the handshake (a TLS alert).
 */

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface ListenerOptions {
  /** For logs: "AWS API", "XKS proxy". */
  name: string;
  /** A TCP address, or a Unix socket path (created mode 0600, plain HTTP; then given `access` when set). */
  address: { host: string; port: number } | ({ socketPath: string } & Partial<SocketAccess>);
  tls?: TlsSettings | undefined;
  handler: RequestHandler;
  log: Logger;
  keepAliveTimeoutMs?: number | undefined;
}

export interface Listener {
  server: Server;
  /** Bound TCP port (0 for a Unix socket). */
  port: number;
  scheme: 'https' | 'http';
  /** Reads the certificate, key and client CA files again and serves them to new connections. */
  reloadTls(): boolean;
  stop(): Promise<void>;
}

/** Subject common names of the verified client certificate of a mutual-TLS connection. */
export function clientCommonNames(socket: Socket): string[] {
  const tls = socket as TLSSocket;
  if (!tls.encrypted || !tls.authorized) return [];
  const cn = tls.getPeerCertificate()?.subject?.CN as string | string[] | undefined;
  return Array.isArray(cn) ? cn : cn ? [cn] : [];
}

/** Whether a request arrived over TLS (aws:SecureTransport). */
export const isSecureTransport = (socket: Socket): boolean => (socket as TLSSocket).encrypted === true;

const PLAIN_HTTP_ON_TLS_PORT = 'This port serves HTTPS only; use an https:// endpoint.\n';

export async function startListener(opts: ListenerOptions): Promise<Listener> {
  const { tls, log, name } = opts;
  let server: Server;
  let reloadTls = (): boolean => false;
  const unwatch: (() => void)[] = [];
  if (tls) {
    const https = createHttpsServer(
      { ...contextOptions(tls), ...(tls.clientCa ? { requestCert: true, rejectUnauthorized: true } : {}) },
      opts.handler,
    );
    refuseOtherSubjects(https, tls.clientSubjectNames, name, log);
    answerPlainHttp(https, name, log);
    reloadTls = () => reload(https, tls, name, log);
    const files = tls.files;
    if (files && tls.watchIntervalMs) {
      let timer: NodeJS.Timeout | undefined;
      const changed = () => {
        // Cert and key are often replaced one after the other: wait for the pair.
        clearTimeout(timer);
        timer = setTimeout(() => reloadTls(), 200);
        timer.unref();
      };
      for (const f of [files.certFile, files.keyFile, files.clientCaFile]) {
        if (!f) continue;
        watchFile(f, { interval: tls.watchIntervalMs, persistent: false }, changed);
        unwatch.push(() => unwatchFile(f, changed));
      }
      unwatch.push(() => clearTimeout(timer));
    }
    server = https;
  } else {
    server = createHttpServer(opts.handler);
  }
  if (opts.keepAliveTimeoutMs) server.keepAliveTimeout = opts.keepAliveTimeoutMs;

  // Shutdown finishes the requests in flight and closes every other connection at once: idle
  // keep-alive ones, and those that never sent a request (or never finished the TLS handshake),
  // which server.close() alone would wait for until their timeouts.
  let stopping = false;
  const open = new Set<Socket>();
  const busy = new WeakSet<Socket>();
  server.on('connection', (raw: Socket) => {
    open.add(raw);
    raw.once('close', () => open.delete(raw));
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const raw = rawSocket(req.socket);
    busy.add(raw);
    res.once('close', () => {
      busy.delete(raw);
      if (stopping) setImmediate(() => raw.destroy());
    });
  });
  const address = opts.address;
  if ('socketPath' in address) await listenOnSocket(server, address.socketPath, address);
  else await listen(server, () => server.listen(address.port, address.host));
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : 0;
  let stopped: Promise<void> | undefined;
  return {
    server,
    port,
    scheme: tls ? 'https' : 'http',
    reloadTls: () => reloadTls(),
    stop: () =>
      (stopped ??= new Promise<void>((resolve) => {
        stopping = true;
        for (const u of unwatch) u();
        server.close(() => resolve());
        for (const raw of open) if (!busy.has(raw)) raw.destroy();
      })),
  };
}

/** The TCP (or Unix) socket under a TLS socket: what the server's 'connection' event saw. */
const rawSocket = (socket: Socket): Socket => (socket as Socket & { _parent?: Socket })._parent ?? socket;

function contextOptions(tls: Pick<TlsSettings, 'cert' | 'key' | 'clientCa'>): SecureContextOptions {
  return { cert: tls.cert, key: tls.key.reveal(), minVersion: 'TLSv1.2', ...(tls.clientCa ? { ca: tls.clientCa } : {}) };
}

/** Builds (and so checks: PEM syntax, key matches certificate) a context before serving it. */
function reload(server: HttpsServer, tls: TlsSettings, name: string, log: Logger): boolean {
  if (!tls.files) return false;
  try {
    const options = contextOptions(readTlsFiles(tls.files, name));
    createSecureContext(options);
    // Existing connections keep their session; new handshakes use the new context.
    server.setSecureContext(options);
    const cert = new X509Certificate(options.cert as string);
    log.info({ listener: name, subject: cert.subject, serial: cert.serialNumber, validTo: cert.validTo }, 'TLS certificate reloaded');
    return true;
  } catch (e) {
    log.error({ listener: name, err: (e as Error).message }, 'TLS reload failed; still serving the previous certificate');
    return false;
  }
}

function refuseOtherSubjects(server: HttpsServer, names: string[] | undefined, name: string, log: Logger): void {
  if (!names) return;
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    const cns = clientCommonNames(socket);
    if (!cns.some((c) => names.includes(c))) {
      log.warn({ listener: name, remote: socket.remoteAddress, cn: cns.join(',').slice(0, 128) }, 'client certificate subject refused');
      socket.destroy();
    }
  });
}

/**
 * A plain-HTTP request to the TLS port gets a plain 400 saying so (as Go's net/http does),
 * written on the raw TCP socket under the failed TLS one, instead of a bare connection reset.
 */
function answerPlainHttp(server: HttpsServer, name: string, log: Logger): void {
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    log.debug({ listener: name, remote: socket.remoteAddress, err: err.code ?? err.message }, 'TLS handshake failed');
    const raw = rawSocket(socket);
    if (err.code !== 'ERR_SSL_HTTP_REQUEST' || raw === socket || raw.destroyed) return;
    raw.end(
      `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${PLAIN_HTTP_ON_TLS_PORT.length}\r\n` +
        `Connection: close\r\n\r\n${PLAIN_HTTP_ON_TLS_PORT}`,
    );
  });
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

/** Who may connect to a Unix socket: its mode, owner and group (REST sidecar sockets authenticate by these). */
export interface SocketAccess {
  mode: number;
  /** Changing them needs the right to: root, or a group the daemon's user is in. */
  uid?: number | undefined;
  gid?: number | undefined;
}

/**
 * Creates the socket with mode 0600 from the start (umask), replacing a stale socket file,
 * then gives it its owner and mode (default 0600), so it is never more open than asked.
 */
async function listenOnSocket(server: Server, path: string, access: Partial<SocketAccess>): Promise<void> {
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
  if (access.uid !== undefined || access.gid !== undefined) chownSync(path, access.uid ?? -1, access.gid ?? -1);
  chmodSync(path, access.mode ?? 0o600);
}
