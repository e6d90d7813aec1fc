import { KMSClient } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { ADMIN, REGION } from './daemon.js';

const ROOT = resolve(import.meta.dirname, '../..');

export interface DevTls {
  dir: string;
  /** PEM texts and paths of ca.pem / server.pem / server.key. */
  ca: string;
  files: { ca: string; cert: string; key: string };
  /** Client certificates made with --client NAME, by NAME. */
  clients: Record<string, { cert: string; key: string }>;
  cleanup(): void;
}

/** TLS material from scripts/dev-tls (the script ./scripts/start --dev-tls uses), in a fresh temp dir. */
export function devTls(clients: string[] = [], dir = mkdtempSync(join(tmpdir(), 'p11kms-tls-'))): DevTls {
  execFileSync(join(ROOT, 'scripts/dev-tls'), [dir, ...clients.flatMap((c) => ['--client', c])], { stdio: ['ignore', 'ignore', 'pipe'] });
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    dir,
    ca: read('ca.pem'),
    files: { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') },
    clients: Object.fromEntries(clients.map((c) => [c, { cert: read(`${c}.pem`), key: read(`${c}.key`) }])),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * The AWS SDK over HTTPS, trusting `ca`, optionally presenting a client certificate. No retries
 * unless `maxAttempts` says so (3 is the SDK's default, standard retry mode).
 */
export function httpsClient(
  endpoint: string,
  tls: { ca: string; cert?: string; key?: string },
  credentials: { accessKeyId: string; secretAccessKey: string } = ADMIN,
  keepAlive = true,
  maxAttempts = 1,
): KMSClient {
  const httpsAgent = new HttpsAgent({ keepAlive, ca: tls.ca, cert: tls.cert, key: tls.key, maxSockets: 16 });
  return new KMSClient({ endpoint, region: REGION, credentials, maxAttempts, requestHandler: new NodeHttpHandler({ httpsAgent }) });
}

/** The AWS SDK over the daemon's Unix socket (plain HTTP, never TLS). */
export function unixSocketClient(socketPath: string, credentials: { accessKeyId: string; secretAccessKey: string } = ADMIN): KMSClient {
  const agent = new HttpAgent({ keepAlive: true });
  (agent as unknown as { createConnection: () => unknown }).createConnection = () => netConnect(socketPath);
  return new KMSClient({ endpoint: 'http://localhost', region: REGION, credentials, maxAttempts: 1, requestHandler: new NodeHttpHandler({ httpAgent: agent }) });
}

/** A fresh TLS connection: what the server presents and negotiates, or the error. */
export function handshake(port: number, opts: ConnectionOptions): Promise<{ serial: string; protocol: string | null; socket: TLSSocket }> {
  return new Promise((resolveConn, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts }, () => {
      resolveConn({ serial: socket.getPeerCertificate().serialNumber, protocol: socket.getProtocol(), socket });
    });
    socket.once('error', reject);
  });
}

/** The serial number of a PEM certificate, as getPeerCertificate() spells it. */
export function serialOf(pemFile: string): string {
  return execFileSync('openssl', ['x509', '-in', pemFile, '-noout', '-serial'], { encoding: 'utf8' }).trim().replace(/^serial=/, '').toUpperCase();
}
