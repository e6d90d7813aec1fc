import { request } from 'node:http';
import { EXIT, parseOrUsage } from './common.js';
import { socketFrom, type CliIo } from './credentials.js';

const USAGE = `Usage: p11kms keys unused --days N [--account ID] [--json] [--socket PATH]

Lists the keys of the account (default: the configured accountId) with no successful
cryptographic use in the last N days, from GetKeyLastUsage's records; a key never used since
tracking began counts from the start of tracking. Asks the running daemon over its admin socket.

Exit codes: 0 listed (also when none is unused), 2 usage, 3 the daemon cannot be reached.
`;

interface UnusedKey { keyId: string; arn: string; state: string; createdAt: number; lastUsedAt?: number; lastOperation?: string; trackingStartAt: number }

export async function keysCli(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h' || (command === 'unused' && (rest.includes('--help') || rest.includes('-h')))) {
    io.out(USAGE);
    return EXIT.ok;
  }
  if (command !== 'unused') {
    io.err(`p11kms keys: ${command ? `unknown command '${command}'` : 'missing command'}.\n\n${USAGE}`);
    return EXIT.usage;
  }
  const parsed = parseOrUsage(rest, { days: { type: 'string' }, account: { type: 'string' }, json: { type: 'boolean' }, socket: { type: 'string' } }, USAGE, io);
  if (!parsed) return EXIT.usage;
  const days = parsed.values.days as string | undefined;
  if (days === undefined || !/^\d+$/.test(days)) {
    io.err(`p11kms keys unused: --days N is required (a whole number of days).\n\n${USAGE}`);
    return EXIT.usage;
  }
  const socket = socketFrom(parsed.values.socket as string | undefined, env);
  const query = new URLSearchParams({ days, ...(parsed.values.account ? { accountId: parsed.values.account as string } : {}) });
  let answer: { status: number; body: { keys?: UnusedKey[]; error?: string } };
  try {
    answer = await get(socket, `/admin/v1/keys/unused?${query}`);
  } catch (e) {
    io.err(`p11kms keys unused: cannot reach the daemon at ${socket}: ${(e as Error).message}\n`);
    return EXIT.unreachable;
  }
  if (answer.status !== 200) {
    io.err(`p11kms keys unused: ${answer.body.error ?? `HTTP ${answer.status}`}\n`);
    return EXIT.usage;
  }
  const keys = answer.body.keys ?? [];
  if (parsed.values.json) io.out(`${JSON.stringify(keys, null, 2)}\n`);
  else if (!keys.length) io.out(`no key unused for ${days} day(s)\n`);
  else {
    for (const k of keys) {
      const last = k.lastUsedAt ? `last used ${new Date(k.lastUsedAt).toISOString()} (${k.lastOperation})` : `never used since ${new Date(k.trackingStartAt).toISOString()}`;
      io.out(`${k.keyId}  ${k.state}  ${last}\n`);
    }
  }
  return EXIT.ok;
}

function get(socketPath: string, path: string): Promise<{ status: number; body: { keys?: UnusedKey[]; error?: string } }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: 'GET', path, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        } catch (e) {
          reject(e as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    req.end();
  });
}
