import { request } from 'node:http';
import { socketFrom, type CliIo } from './credentials.js';
import type { DatabaseHealth } from '../model/database-health.js';
import { EXIT, parseOrUsage } from './common.js';

const USAGE = `Usage: p11kms status [--json] [--socket PATH]

Asks the running daemon, over its admin socket (GET /admin/v1/status), for its health: the
token and its session pool, the metadata database, custom key stores, the audit trail and the
listeners.

  --json         print the answer as JSON
  --socket PATH  the daemon's admin socket (default: P11KMS_SOCKET, the configuration, or
                 <P11KMS_DATA_DIR or ./var>/p11kms.sock)

Exit codes: 0 ready, 1 the daemon answers but is not ready (token away, shared database
unavailable, audit trail failing),
2 usage, 3 the daemon cannot be reached.
`;

interface Status {
  ready: boolean;
  pid: number;
  node: string;
  uptimeSeconds: number;
  token: { label: string; state: string; recoveries: number; sessions: { size: number; idle: number; inUse: number; waiting: number; max: number } };
  customKeyStores: { id: string; state: string; errorCode?: string; local?: { state: string; errorCode?: string } }[];
  database?: DatabaseHealth;
  audit: { enabled: boolean; healthy?: boolean; seq?: number; file?: string };
  listeners: { tcp: string; socket: string; sidecars: string[]; xks?: string };
}

export async function statusCli(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const parsed = parseOrUsage(argv, { json: { type: 'boolean' }, socket: { type: 'string' } }, USAGE, io);
  if (!parsed) return EXIT.usage;
  if (parsed.values.help) {
    io.out(USAGE);
    return EXIT.ok;
  }
  const socket = socketFrom(parsed.values.socket as string | undefined, env);
  let status: Status;
  try {
    status = await getStatus(socket);
  } catch (e) {
    io.err(`p11kms status: cannot reach the daemon at ${socket}: ${(e as Error).message}\n` +
      'Is it running (./scripts/start, or systemctl status p11kms)? Another data directory: set P11KMS_DATA_DIR or --socket.\n');
    return EXIT.unreachable;
  }
  const healthy = status.ready && (!status.audit.enabled || status.audit.healthy === true);
  io.out(parsed.values.json ? `${JSON.stringify(status, null, 2)}\n` : format(status, healthy));
  return healthy ? EXIT.ok : EXIT.problem;
}

function getStatus(socketPath: string): Promise<Status> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: 'GET', path: '/admin/v1/status', timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Status);
        } catch (e) {
          reject(e as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end();
  });
}

/** This node's own sessions, when they differ from the shared state (e.g. CONNECTED, but unreachable from here). */
function onThisNode(k: Status['customKeyStores'][number]): string {
  if (!k.local || k.local.state === k.state || (k.local.state === 'DISCONNECTED' && k.state !== 'CONNECTED')) return '';
  return `, here ${k.local.state}${k.local.errorCode ? ` (${k.local.errorCode})` : ''}`;
}

function format(s: Status, healthy: boolean): string {
  const p = s.token.sessions;
  const stores = s.customKeyStores.length
    ? s.customKeyStores.map((k) => `${k.id} ${k.state}${k.errorCode ? ` (${k.errorCode})` : ''}${onThisNode(k)}`).join(', ')
    : 'none';
  const audit = s.audit.enabled ? `${s.audit.healthy ? 'writing' : 'FAILING'}, last seq ${s.audit.seq}, file ${s.audit.file ?? '-'}` : 'disabled';
  const l = s.listeners;
  const d = s.database;
  const database = !d || d.kind === 'sqlite'
    ? 'SQLite (this host)'
    : `PostgreSQL ${d.state === 'ok' ? 'ok' : `UNAVAILABLE (${d.reason ?? '?'})`}, schema ${d.schemaVersion}, node ${d.nodeId}${d.leader ? ', leader' : ''}`;
  return [
    `p11kms: ${healthy ? 'ready' : 'NOT READY'} (pid ${s.pid}, up ${s.uptimeSeconds} s, node ${s.node})`,
    `token:             ${s.token.label}, ${s.token.state}, ${s.token.recoveries} recoveries`,
    `session pool:      ${p.size}/${p.max} open, ${p.inUse} in use, ${p.idle} idle, ${p.waiting} waiting`,
    `metadata store:    ${database}`,
    `custom key stores: ${stores}`,
    `audit trail:       ${audit}`,
    `listening:         tcp ${l.tcp}, admin socket ${l.socket}${l.sidecars.length ? `, sidecars ${l.sidecars.join(' ')}` : ''}${l.xks ? `, xks ${l.xks}` : ''}`,
    '',
  ].join('\n');
}
