import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';

/**
 * A real HAProxy (Debian's `haproxy` package, installed by ./scripts/setup) started by a test
 * with its own configuration file and stats socket in the test's temp dir, in the foreground
 * (`-db`), never the system service. HAProxy refuses `bind …:0`, so the frontend port is one
 * the kernel just handed out to a probe socket (tried again if someone took it meanwhile).
 */

export const HAPROXY = process.env.P11KMS_HAPROXY ?? 'haproxy';

/** `haproxy -v`'s first line, or undefined when HAProxy is not installed. */
export function haproxyVersion(): string | undefined {
  const r = spawnSync(HAPROXY, ['-v'], { encoding: 'utf8' });
  return r.status === 0 ? /HAProxy version (\S+)/.exec(r.stdout)?.[1] ?? 'unknown version' : undefined;
}

export interface Haproxy {
  port: number;
  child: ChildProcess;
  /** Its stderr (server state changes are printed there in the foreground), with a ms timestamp per chunk. */
  events: { at: number; text: string }[];
  /** `show stat` as rows keyed by column name (pxname, svname, status, stot, …). */
  stat(): Promise<Record<string, string>[]>;
  stop(): Promise<void>;
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** One command on the stats socket; HAProxy answers and closes the connection. */
function statsCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const s = createConnection(socketPath, () => s.end(`${command}\n`));
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.once('error', reject);
    s.once('close', () => resolve(out));
  });
}

/**
 * Starts HAProxy on `config(frontendPort, statsSocketPath)` and resolves once its stats socket
 * answers (HAProxy then listens on the frontend too).
 */
export async function startHaproxy(dir: string, config: (port: number, statsSocket: string) => string): Promise<Haproxy> {
  const socketPath = join(dir, 'haproxy.sock');
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, config(port, socketPath));
    const child = spawn(HAPROXY, ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    const events: Haproxy['events'] = [];
    child.stderr!.on('data', (d: Buffer) => events.push({ at: performance.now(), text: d.toString() }));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const log = () => events.map((e) => e.text).join('');
    const deadline = Date.now() + 10_000;
    let up = false;
    while (!up && child.exitCode === null && Date.now() < deadline) {
      up = await statsCommand(socketPath, 'show info').then((t) => t.includes('Name: HAProxy'), () => false);
      if (!up) await new Promise((r) => setTimeout(r, 25));
    }
    if (!up) {
      child.kill('SIGKILL');
      await exited;
      if (attempt < 3 && /cannot bind socket|Address already in use/.test(log())) continue;
      throw new Error(`haproxy did not start:\n${log()}`);
    }
    return {
      port,
      child,
      events,
      async stat() {
        const [header, ...rows] = (await statsCommand(socketPath, 'show stat')).trim().split('\n');
        const names = header!.replace(/^# /, '').split(',');
        return rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [names[i]!, v])));
      },
      async stop() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        await exited;
      },
    };
  }
}
