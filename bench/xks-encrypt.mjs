#!/usr/bin/env node
/**
 * XKS Encrypt throughput and latency against the built daemon (dist/), as AWS KMS would load it:
 * HTTPS (self-signed certificate made here with openssl), keep-alive connections, SigV4-signed
 * requests (service kms-xks-proxy), 32 bytes of plaintext (a data key) with AAD.
 *
 *   npm run build && node bench/xks-encrypt.mjs [--seconds 15] [--connections 32] [--cdiv] [--http] [--rate 1800]
 *
 * The daemon runs in its own process on a fresh SoftHSM2 token; autocannon drives it from this
 * process (on a 2-core machine the two compete for the CPU, so the figures are conservative).
 * The target: ≥ 1,800 requests/s with p99 ≤ 25 ms.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Sha256 } from '@aws-crypto/sha256-js';
import { CreateAliasCommand, CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import autocannon from 'autocannon';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    connections: { type: 'string', default: '32' },
    cdiv: { type: 'boolean', default: false },
    http: { type: 'boolean', default: false },
    /** Fixed offered load (requests/s over all connections) instead of as fast as possible. */
    rate: { type: 'string' },
    /** Directory for a V8 CPU profile of the daemon (node --cpu-prof). */
    profile: { type: 'string' },
  },
});
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'p11kms-xks-bench-'));
const KMS_PORT = 4700 + Math.floor(Math.random() * 200);
const XKS_PORT = KMS_PORT + 1000;
const CRED = { accessKeyId: 'AKIAXKSBENCHMARK2345', secretAccessKey: 'FYtE5EFA5FT0mCc3DrGUe2sti527BitkQ0Zr9MO9fvE' };
const ADMIN = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };

execFileSync(join(ROOT, 'softhsm/create-token.sh'), [join(dir, 'softhsm'), 'p11kms-bench'], { stdio: 'ignore' });
const env = {
  ...process.env,
  SOFTHSM2_CONF: join(dir, 'softhsm', 'softhsm2.conf'),
  P11KMS_DATA_DIR: join(dir, 'data'),
  P11KMS_PORT: String(KMS_PORT),
  P11KMS_TOKEN_LABEL: 'p11kms-bench',
  P11KMS_PIN_FILE: join(dir, 'softhsm', 'user.pin'),
  P11KMS_LOG_LEVEL: 'warn',
  P11KMS_XKS_ENABLED: '1',
  P11KMS_XKS_PORT: String(XKS_PORT),
  P11KMS_XKS_URI_PREFIX: '/bench',
  P11KMS_XKS_ACCESS_KEY_ID: CRED.accessKeyId,
  P11KMS_XKS_SECRET_ACCESS_KEY: CRED.secretAccessKey,
  P11KMS_XKS_KEYS: 'bench=alias/xks-bench',
};
if (args.http) {
  env.P11KMS_XKS_INSECURE_HTTP = '1';
} else {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, stdio: 'ignore' });
  env.P11KMS_XKS_TLS_CERT = join(dir, 'cert.pem');
  env.P11KMS_XKS_TLS_KEY = join(dir, 'key.pem');
}

const nodeArgs = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${resolve(args.profile)}`] : [];
const daemon = spawn(process.execPath, [...nodeArgs, join(ROOT, 'dist/entry.cjs'), 'serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
let exited;
const cleanup = async () => {
  exited ??= new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGTERM');
  await exited;
  rmSync(dir, { recursive: true, force: true });
};

const kms = new KMSClient({ endpoint: `http://127.0.0.1:${KMS_PORT}`, region: 'us-east-1', credentials: ADMIN, maxAttempts: 1 });
for (let i = 0; ; i++) {
  try {
    const id = (await kms.send(new CreateKeyCommand({}))).KeyMetadata.KeyId;
    await kms.send(new CreateAliasCommand({ AliasName: 'alias/xks-bench', TargetKeyId: id }));
    break;
  } catch (e) {
    if (i > 100) throw e;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const scheme = args.http ? 'http' : 'https';
const path = '/bench/kms/xks/v1/keys/bench/encrypt';
const body = JSON.stringify({
  requestMetadata: {
    awsPrincipalArn: 'arn:aws:iam::123456789012:user/Alice',
    kmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    kmsOperation: 'GenerateDataKey',
    kmsRequestId: '4112f4d6-db54-4af4-ae30-c55a22a8dfae',
  },
  plaintext: Buffer.alloc(32, 7).toString('base64'),
  additionalAuthenticatedData: Buffer.alloc(120, 9).toString('base64'),
  encryptionAlgorithm: 'AES_GCM',
  ...(args.cdiv ? { ciphertextDataIntegrityValueAlgorithm: 'SHA_256' } : {}),
});
const host = `127.0.0.1:${XKS_PORT}`;
const signed = await new SignatureV4({ service: 'kms-xks-proxy', region: 'us-east-1', credentials: CRED, sha256: Sha256 }).sign(
  new HttpRequest({ method: 'POST', protocol: `${scheme}:`, hostname: '127.0.0.1', port: XKS_PORT, path, headers: { host, 'content-type': 'application/json' }, body }),
);

const run = (duration, connections) =>
  autocannon({
    url: `${scheme}://${host}${path}`, method: 'POST', headers: signed.headers, body, connections, duration,
    ...(args.rate ? { overallRate: Number(args.rate) } : {}),
  });

await run(3, Number(args.connections)); // warm-up
const r = await run(Number(args.seconds), Number(args.connections));
const ok = r['2xx'];
const summary = {
  scheme,
  cdiv: args.cdiv,
  connections: Number(args.connections),
  offeredRate: args.rate ? Number(args.rate) : 'max',
  seconds: Number(args.seconds),
  requestsPerSecond: Math.round(ok / Number(args.seconds)),
  latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
  non2xx: r.non2xx,
  errors: r.errors,
  timeouts: r.timeouts,
};
console.log(JSON.stringify(summary, null, 2));
await cleanup();
process.exit(summary.non2xx || summary.errors ? 1 : 0);
