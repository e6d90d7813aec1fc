// The network-HSM rows of `npm run bench`: Encrypt through the HSM emulator (test/emulator) in
// front of the same SoftHSM2 token, at BENCH_HSM_LATENCIES ms per token call (default 1,5) and
// pool sizes BENCH_HSM_POOLS (default 8,32,128), BENCH_HSM_SECONDS per row (default 5).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { encryptBodies, LABEL, load, log, MODULE, presign, ROOT, runNode, startDaemon } from './lib.js';

const HSM_SECONDS = Number(process.env.BENCH_HSM_SECONDS ?? 5);
const HSM_LATENCIES = (process.env.BENCH_HSM_LATENCIES ?? '1,5').split(',').map(Number);
const HSM_POOLS = (process.env.BENCH_HSM_POOLS ?? '8,32,128').split(',').map(Number);

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const fmt = (x, d = 0) => (x === undefined ? '–' : x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));

/**
 * The emulator sleeps `latency` ms in the calling thread on each call a network HSM would send to
 * the HSM (C_Encrypt here; C_EncryptInit is local). The emulated HSM's capacity for a pool is
 * sessions ÷ latency; each row starts its own daemon with that pool and twice as many connections.
 */
export async function hsmRows(dir, conf) {
  const module = execFileSync(join(ROOT, 'test/emulator/build.sh'), { encoding: 'utf8' }).trim();
  const rows = [];
  for (const latency of HSM_LATENCIES) {
    for (const pool of HSM_POOLS) {
      const emuConf = join(dir, `p11emu-${latency}-${pool}.conf`);
      writeFileSync(emuConf, `module=${MODULE}\nlatency_ms=${latency}\n`);
      const connections = Math.max(16, 2 * pool);
      const capacity = (pool * 1000) / latency;
      const daemon = await startDaemon(dir, conf, {
        env: { P11KMS_PKCS11_MODULE: module, P11EMU_CONFIG: emuConf, P11KMS_MAX_SESSIONS: String(pool), P11KMS_SOFTWARE_TOKEN: 'false' },
      });
      try {
        const bodies = await encryptBodies(daemon.port, 'bench hsm');
        log(`HSM ${latency} ms, pool ${pool}: warm-up 1 s, then ${HSM_SECONDS} s at ${connections} connections`);
        await load(daemon.port, await presign(daemon.port, 'Encrypt', bodies), 1, daemon.child.pid, { connections });
        const r = await load(daemon.port, await presign(daemon.port, 'Encrypt', bodies), HSM_SECONDS, daemon.child.pid, { connections });
        log(`HSM ${latency} ms, pool ${pool}: ${fmt(r.rps)} req/s of ${fmt(capacity)} (${((100 * r.rps) / capacity).toFixed(0)} %), p50 ${r.p50} ms, p99 ${r.p99} ms, daemon ${r.daemonCores.toFixed(2)} cores, load ${loadavg()}`);
        rows.push({ latency, pool, connections, capacity, load: loadavg(), ...r });
      } finally {
        daemon.child.kill('SIGTERM');
        await new Promise((res) => daemon.child.once('exit', res));
      }
      // The control: the same emulated HSM driven by `pool` plain threads, no daemon.
      const direct = await runNode([join(ROOT, 'bench/hsm-direct.mjs'), module, LABEL, join(dir, 'softhsm', 'user.pin'), String(pool), '3'], {
        env: { ...process.env, SOFTHSM2_CONF: conf, P11EMU_CONFIG: emuConf },
      });
      rows.at(-1).direct = direct.rps;
      log(`HSM ${latency} ms, pool ${pool}: driven directly by ${pool} threads ${fmt(direct.rps)} ops/s`);
    }
  }
  return rows;
}

export function hsmTable(rows) {
  if (rows.length === 0) return [];
  return [
    '',
    `Through the HSM emulator (test/emulator, in front of the same SoftHSM2 token): Encrypt with the emulator sleeping the given latency in the calling thread on each C_Encrypt, as a network HSM blocks; one daemon per row with that many sessions (a network-HSM profile: token calls on the libuv pool, UV_THREADPOOL_SIZE = sessions + 4), 2 × pool connections (at least 16), ${HSM_SECONDS} s after 1 s warm-up. Capacity = sessions ÷ latency.`,
    '',
    '| Token call latency | Pool (sessions) | Connections | Emulated HSM capacity (req/s) | Same HSM driven directly (ops/s) | Daemon Encrypt req/s | % of capacity | p50 (ms) | p99 (ms) | Daemon CPU (cores) | Load average after |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows.map((r) => {
      const flag = r.non2xx || r.errors ? ` (${r.non2xx} non-2xx, ${r.errors} errors)` : '';
      return `| ${r.latency} ms | ${r.pool} | ${r.connections} | ${fmt(r.capacity)} | ${fmt(r.direct)} | ${fmt(r.rps)}${flag} | ${((100 * r.rps) / r.capacity).toFixed(0)} % | ${fmt(r.p50)} | ${fmt(r.p99)} | ${r.daemonCores.toFixed(2)} | ${r.load} |`;
    }),
  ];
}
