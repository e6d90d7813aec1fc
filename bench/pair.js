// A/B of two builds under the same conditions: both daemons run at once, each on its own token,
// each offered the same fixed request rate by its own load generator, so the shared machine's
// load (other processes, CPU frequency, cache pressure) falls on both alike. Reports daemon CPU
// per request (all threads, user + system; and the main thread alone) per round and the ratio.
//
// usage: node bench/pair.js A/dist/entry.cjs B/dist/entry.cjs
// Environment: PAIR_OP (Encrypt, Decrypt, GenerateDataKey, Sign; default Encrypt), PAIR_RATE
// (requests/s offered to each daemon, default 400), PAIR_SECONDS (per round, default 8),
// PAIR_ROUNDS (default 3), PAIR_CONNECTIONS (default 16), BENCH_DAEMON_ENV (both daemons),
// PAIR_ENV_A / PAIR_ENV_B (JSON, one daemon: e.g. the same build with another setting),
// PAIR_SEQUENTIAL=1 (one connection, one request at a time: bench/sequential.js; no rate).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { load, log, makeToken, presign, requestBodies, startDaemon } from './lib.js';

const [entryA, entryB] = process.argv.slice(2);
if (!entryA || !entryB) {
  process.stderr.write('usage: node bench/pair.js A/dist/entry.cjs B/dist/entry.cjs\n');
  process.exit(2);
}
const OP = process.env.PAIR_OP ?? 'Encrypt';
const RATE = Number(process.env.PAIR_RATE ?? 400);
const SECONDS = Number(process.env.PAIR_SECONDS ?? 8);
const ROUNDS = Number(process.env.PAIR_ROUNDS ?? 3);
const SEQUENTIAL = process.env.PAIR_SEQUENTIAL === '1';
const CONNECTIONS = SEQUENTIAL ? 1 : Number(process.env.PAIR_CONNECTIONS ?? 16);
const shape = { connections: CONNECTIONS, rate: SEQUENTIAL ? undefined : RATE, sequential: SEQUENTIAL };
const json = (v) => (v ? JSON.parse(v) : {});
const env = json(process.env.BENCH_DAEMON_ENV);
const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

async function side(name, entry, own) {
  const dir = mkdtempSync(join(os.tmpdir(), `p11kms-pair-${name}-`));
  const { conf } = makeToken(dir);
  const daemon = await startDaemon(dir, conf, { entry, env: { ...env, ...own } });
  const bodies = (await requestBodies(daemon.port))[OP];
  if (!bodies) throw new Error(`no ${OP} requests for this token`);
  return { name, entry, dir, daemon, bodies, cpu: [], main: [] };
}

const mainUs = (threads) => Number(/main (\d+)/.exec(threads)?.[1] ?? NaN);
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main() {
  log(`pair: ${OP} at ${RATE} req/s each, ${CONNECTIONS} connections, ${ROUNDS} × ${SECONDS} s; load average before ${loadavg()}`);
  const sides = [await side('A', entryA, json(process.env.PAIR_ENV_A)), await side('B', entryB, json(process.env.PAIR_ENV_B))];
  try {
    // Warm-up (JIT, caches, sessions) for both at once.
    await Promise.all(sides.map(async (s) => load(s.daemon.port, await presign(s.daemon.port, OP, s.bodies), 2, s.daemon.child.pid, shape)));
    for (let round = 1; round <= ROUNDS; round++) {
      const signed = await Promise.all(sides.map((s) => presign(s.daemon.port, OP, s.bodies)));
      const results = await Promise.all(sides.map((s, i) => load(s.daemon.port, signed[i], SECONDS, s.daemon.child.pid, shape)));
      results.forEach((r, i) => {
        const s = sides[i];
        s.cpu.push(r.cpuUsPerReq);
        s.main.push(mainUs(r.threads));
        log(`round ${round} ${s.name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, CPU ${r.cpuUsPerReq.toFixed(0)} µs/request (system ${r.sysUsPerReq.toFixed(0)}), by thread: ${r.threads}${r.non2xx ? `, ${r.non2xx} non-2xx` : ''}`);
      });
      log(`round ${round}: B/A CPU per request ${(results[1].cpuUsPerReq / results[0].cpuUsPerReq).toFixed(3)}, load average ${loadavg()}`);
    }
  } finally {
    for (const s of sides) {
      s.daemon.child.kill('SIGTERM');
      await new Promise((r) => s.daemon.child.once('exit', r));
      rmSync(s.dir, { recursive: true, force: true });
    }
  }
  const [a, b] = sides;
  process.stdout.write(`${JSON.stringify({
    op: OP, rate: RATE, rounds: ROUNDS, seconds: SECONDS, loadAfter: loadavg(),
    A: { entry: a.entry, cpuUsPerRequest: a.cpu.map(Math.round), mainUsPerRequest: a.main },
    B: { entry: b.entry, cpuUsPerRequest: b.cpu.map(Math.round), mainUsPerRequest: b.main },
    ratioBtoA: +(mean(b.cpu) / mean(a.cpu)).toFixed(3),
    mainRatioBtoA: +(mean(b.main) / mean(a.main)).toFixed(3),
  })}\n`);
}

main().catch((e) => {
  process.stderr.write(`pair failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
