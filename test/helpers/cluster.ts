import { KMSClient } from '@aws-sdk/client-kms';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { client } from './daemon.js';
import { sharedPgCluster } from './postgres.js';
import { createTempToken, SOFTHSM_MODULE, type TempToken } from './softhsm.js';

const ROOT = resolve(import.meta.dirname, '../..');

/** One daemon of a test cluster: a real child process (dist/) on one shared token and database. */
export interface ClusterNode {
  id: string;
  port: number;
  endpoint: string;
  socketPath: string;
  dataDir: string;
  kms: KMSClient;
  child: ChildProcess;
  /** Everything the node logged (JSON lines). */
  output(): string;
  /** Resolves with the exit code (or signal) once the process ended. */
  exited: Promise<number | string | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface NodeOptions {
  token: TempToken;
  databaseUrl: string;
  id: string;
  env?: Record<string, string>;
}

/** Spawns `node dist/entry.cjs` and waits for "p11kms listening" (or for it to exit). */
export async function startNode(opts: NodeOptions): Promise<ClusterNode> {
  const dataDir = join(opts.token.dir, `node-${opts.id}`);
  const socketPath = join(dataDir, 'kms.sock');
  const child = spawn(process.execPath, [join(ROOT, 'dist/entry.cjs'), 'serve'], {
    env: {
      PATH: process.env.PATH,
      SOFTHSM2_CONF: opts.token.conf,
      P11KMS_DATA_DIR: dataDir,
      P11KMS_PORT: '0',
      P11KMS_SOCKET: socketPath,
      P11KMS_PKCS11_MODULE: SOFTHSM_MODULE,
      P11KMS_TOKEN_LABEL: opts.token.label,
      P11KMS_PIN_FILE: join(opts.token.dir, 'softhsm', 'user.pin'),
      P11KMS_DATABASE_URL: opts.databaseUrl,
      P11KMS_NODE_ID: opts.id,
      P11KMS_LOG_LEVEL: 'info',
      P11KMS_TOKEN_WORKER_THREADS: '1',
      P11KMS_MAX_SESSIONS: '4',
      // Several processes on one SoftHSM2 token directory: its profile's objectList (native-config/softhsm2.json).
      P11KMS_OBJECT_LIST: 'per-process',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (d: Buffer) => {
    output += d.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | string | null>((r) => child.once('exit', (code, signal) => r(code ?? signal)));
  const deadline = Date.now() + 30_000;
  while (!/"msg":"p11kms listening"/.test(output)) {
    if (child.exitCode !== null || child.signalCode !== null) throw Object.assign(new Error(`node ${opts.id} exited:\n${output}`), { output });
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`node ${opts.id} did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const port = JSON.parse(output.split('\n').find((l) => l.includes('p11kms listening'))!).port as number;
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    id: opts.id,
    port,
    endpoint,
    socketPath,
    dataDir,
    kms: client(endpoint),
    child,
    output: () => output,
    exited,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/**
 * Makes every write to a regular file by the node fail, as on a full disk, or lets it write
 * again: its soft RLIMIT_FSIZE set to 0 (prlimit, util-linux), so write(2) returns EFBIG (Node
 * ignores SIGXFSZ). Its logs go to pipes, which the limit does not cover; its metadata goes to
 * PostgreSQL. What it writes to files is its audit trail and, when token objects change, the
 * SoftHSM2 token: callers send it requests that change no token object while it is blocked.
 */
export function blockFileWrites(node: ClusterNode, blocked: boolean): void {
  execFileSync('prlimit', ['--pid', String(node.child.pid), `--fsize=${blocked ? '0' : 'unlimited'}:`]);
}

/** Polls until fn stops throwing / returns true; returns how long it took (ms). */
export async function until(fn: () => Promise<boolean>, timeoutMs = 10_000, stepMs = 5): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await fn().catch(() => false)) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`condition not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Which node logged that it became the leader most recently (undefined: none yet). */
export function leaderOf(nodes: ClusterNode[]): ClusterNode | undefined {
  return nodes.find((n) => n.child.exitCode === null && n.child.signalCode === null && /now the leader/.test(n.output()));
}

/** Nodes started at once; if one fails, those that started are killed (they would outlive the file) and its error is thrown. */
export async function startAll(list: NodeOptions[]): Promise<ClusterNode[]> {
  const started = await Promise.allSettled(list.map((o) => startNode(o)));
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r) => r.status === 'rejected');
  if (!failed) return nodes;
  await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
  throw failed.reason;
}

/** Nodes started all at once (migrations run under an advisory lock, the audit seal key is made once) on a new token and database. */
export async function startNodes(
  database: string,
  env: Record<string, string> = {},
  ids = ['a', 'b', 'c'],
): Promise<{ token: TempToken; url: string; nodes: ClusterNode[] }> {
  const token = createTempToken();
  const url = sharedPgCluster().createDatabase(database);
  try {
    return { token, url, nodes: await startAll(ids.map((id) => ({ token, databaseUrl: url, id, env }))) };
  } catch (e) {
    token.cleanup();
    throw e;
  }
}

export async function stopNodes(nodes: ClusterNode[], token: TempToken | undefined): Promise<void> {
  await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
  token?.cleanup();
}
