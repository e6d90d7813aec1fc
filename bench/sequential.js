// One connection, one request at a time (the next is sent when the previous answer has been
// read), timed per request with the high-resolution clock: autocannon's latencies have 1 ms
// resolution, too coarse for the single-connection targets (p50 ≤ 1 ms). Reads its job as JSON
// on stdin ({url, seconds, requests: [{method, path, headers, body}]}) and prints the same JSON
// line as bench/load.js.
import http from 'node:http';

const cpu0 = process.cpuUsage();
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', async () => {
  const job = JSON.parse(input);
  const url = new URL(job.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const once = (r) =>
    new Promise((resolve, reject) => {
      const req = http.request({ agent, host: url.hostname, port: url.port, method: r.method, path: r.path, headers: r.headers }, (res) => {
        res.on('data', () => {});
        res.on('end', () => resolve(res.statusCode));
      });
      req.on('error', reject);
      req.end(r.body);
    });
  const latencies = [];
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  const started = process.hrtime.bigint();
  const end = Date.now() + job.seconds * 1000;
  for (let i = 0; Date.now() < end; i++) {
    const t = process.hrtime.bigint();
    try {
      const status = await once(job.requests[i % job.requests.length]);
      if (status >= 200 && status < 300) ok++;
      else non2xx++;
    } catch {
      errors++;
    }
    latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  const pct = (q) => +(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN).toFixed(2);
  const c = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({
    ok, non2xx, errors, timeouts: 0, seconds, rps: ok / seconds, p50: pct(0.5), p99: pct(0.99), max: pct(1), cpuMs: (c.user + c.system) / 1000,
  })}\n`);
  agent.destroy();
});
