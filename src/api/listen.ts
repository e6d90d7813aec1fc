import { chmodSync, chownSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:http';
import { dirname } from 'node:path';

/** Listening, socket files and graceful closing, shared by the daemon's listeners. */

export function listen(server: Server, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
    start();
  });
}

export interface SocketAccess {
  mode: number;
  /** Owner and group of the socket file; changing them needs the right to (root, or a group the daemon's user is in). */
  uid?: number | undefined;
  gid?: number | undefined;
}

/**
 * Creates the socket with mode 0600 from the start (umask), replacing a stale socket file, then
 * gives it its owner and mode: whoever can connect to it is authenticated by the file system.
 * A missing parent directory is created 0700 (a sidecar socket's directory must let its
 * application through: create it beforehand, e.g. systemd's RuntimeDirectory).
 */
export async function listenOnSocket(server: Server, path: string, access: SocketAccess = { mode: 0o600 }): Promise<void> {
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
  chmodSync(path, access.mode);
}

/**
 * During shutdown a keep-alive connection is closed as soon as its response is sent, instead of
 * holding the server open until the keep-alive timeout.
 */
export function drainable(server: Server, stopping: () => boolean): Server {
  server.on('request', (_req, res) => {
    res.once('finish', () => {
      if (stopping()) setImmediate(() => server.closeIdleConnections());
    });
  });
  return server;
}

export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive connections with no request in flight would hold close() open.
    server.closeIdleConnections();
  });
}
