// The load generator, in its own process so it does not share the daemon's event loop:
// autocannon replaying a pool of pre-signed SigV4 requests. Reads its job as JSON on stdin
// ({url, connections, seconds, requests: [{method, path, headers, body}]}) and prints the
// result as one JSON line.
import autocannon from 'autocannon';

const cpu0 = process.cpuUsage();
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const job = JSON.parse(input);
  autocannon(
    {
      url: job.url,
      connections: job.connections,
      duration: job.seconds,
      pipelining: 1,
      requests: job.requests,
      // A fixed offered rate (BENCH_RATE) compares CPU per request of two builds at the same load.
      ...(job.rate ? { overallRate: job.rate } : {}),
    },
    (err, r) => {
      if (err) {
        process.stderr.write(`${err.message}\n`);
        process.exit(1);
      }
      process.stdout.write(
        `${JSON.stringify({
          ok: r['2xx'],
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          seconds: r.duration,
          rps: r['2xx'] / r.duration,
          p50: r.latency.p50,
          p99: r.latency.p99,
          max: r.latency.max,
          cpuMs: (() => {
            const c = process.cpuUsage(cpu0);
            return (c.user + c.system) / 1000;
          })(),
        })}\n`,
      );
    },
  );
});
