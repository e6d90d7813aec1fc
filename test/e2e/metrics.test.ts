import { CreateKeyCommand, DecryptCommand, DisableKeyCommand, EncryptCommand } from '@aws-sdk/client-kms';
import express from 'express';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricsRouter, isLoopback } from '../../src/metrics/http.js';
import { jobFailures, jobRuns } from '../../src/metrics/metrics.js';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { testStoreIsPostgres } from '../helpers/postgres.js';

const BEARER = 'metrics-bearer-token-for-tests';
let h: Harness;
beforeAll(async () => {
  // Listening on every address (plain HTTP, through the documented override), so that the non-loopback rule can be exercised.
  h = await startHarness({ env: { P11KMS_HOST: '0.0.0.0', P11KMS_PLAIN_HTTP_BEHIND_TLS_PROXY: 'true', P11KMS_METRICS_BEARER_TOKEN: BEARER } });
});
afterAll(async () => {
  await h?.stop();
});

/** This machine's first non-loopback IPv4 address: connections to it do not come from loopback. */
const external = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

async function scrape(host = '127.0.0.1', port = h.daemon.port, auth?: string): Promise<{ status: number; text: string; type: string | null }> {
  const res = await fetch(`http://${host}:${port}/metrics`, { headers: auth ? { authorization: auth } : {} });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
}

/** The value of one sample: name{labels} value (labels in any order given as a subset). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

describe('/metrics', () => {
  it('is scraped over loopback in the Prometheus text format, and its values follow the calls', async () => {
    const before = await scrape();
    expect(before.status).toBe(200);
    expect(before.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const key = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const other = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    await h.kms.send(new DisableKeyCommand({ KeyId: other.KeyId }));
    const blobs = [];
    for (let i = 0; i < 3; i++) blobs.push((await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('m') }))).CiphertextBlob);
    await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: blobs[0], EncryptionContext: { wrong: 'context' } })));
    await failure(h.kms.send(new EncryptCommand({ KeyId: other.KeyId, Plaintext: Buffer.from('m') })));
    jobRuns.inc({ job: 'rotation' });
    jobFailures.inc({ job: 'deletion' });

    const after = (await scrape()).text;
    const delta = (name: string, labels: Record<string, string>) => sample(after, name, labels) - sample(before.text, name, labels);
    const aws = { front_door: 'aws-json' };
    expect(delta('p11kms_requests_total', { ...aws, operation: 'Encrypt', outcome: 'success' })).toBe(3);
    expect(delta('p11kms_requests_total', { ...aws, operation: 'Encrypt', outcome: 'client_error' })).toBe(1);
    expect(delta('p11kms_requests_total', { ...aws, operation: 'Decrypt', outcome: 'client_error' })).toBe(1);
    expect(delta('p11kms_requests_total', { ...aws, operation: 'CreateKey', outcome: 'success' })).toBe(2);
    expect(delta('p11kms_request_errors_total', { ...aws, operation: 'Encrypt', code: 'DisabledException' })).toBe(1);
    expect(delta('p11kms_request_errors_total', { ...aws, operation: 'Decrypt', code: 'InvalidCiphertextException' })).toBe(1);
    expect(delta('p11kms_request_duration_seconds_count', { ...aws, operation: 'Encrypt' })).toBe(4);
    expect(delta('p11kms_request_duration_seconds_bucket', { ...aws, operation: 'Encrypt', le: '+Inf' })).toBe(4);
    // Token calls by mechanism: three encryptions, one failed decryption (tag mismatch), two key generations.
    expect(delta('p11kms_token_call_duration_seconds_count', { mechanism: 'CKM_AES_GCM', operation: 'encrypt', outcome: 'ok' })).toBe(3);
    expect(delta('p11kms_token_call_duration_seconds_count', { mechanism: 'CKM_AES_GCM', operation: 'decrypt', outcome: 'error' })).toBe(1);
    expect(delta('p11kms_token_call_duration_seconds_count', { mechanism: 'CKM_AES_KEY_GEN', operation: 'generate', outcome: 'ok' })).toBe(2);
    expect(sample(after, 'p11kms_token_call_duration_seconds_count', { mechanism: 'CKM_SHA256_HMAC' })).toBeGreaterThan(0);
    // Every call wrote an audit event.
    expect(delta('p11kms_audit_events_total', { outcome: 'written' })).toBeGreaterThanOrEqual(8);
    expect(delta('p11kms_audit_write_duration_seconds_count', {})).toBeGreaterThan(0);
    expect(sample(after, 'p11kms_audit_healthy')).toBe(1);
    expect(sample(after, 'p11kms_audit_last_seq')).toBeGreaterThan(sample(before.text, 'p11kms_audit_last_seq'));
    // State gauges read at scrape time.
    expect(sample(after, 'p11kms_keys', { state: 'Enabled' })).toBe(1);
    expect(sample(after, 'p11kms_keys', { state: 'Disabled' })).toBe(1);
    expect(sample(after, 'p11kms_token_state', { state: 'ready', token: h.token.label })).toBe(1);
    expect(sample(after, 'p11kms_token_state', { state: 'down' })).toBe(0);
    expect(sample(after, 'p11kms_session_pool_sessions', { state: 'max' })).toBe(8);
    expect(sample(after, 'p11kms_session_pool_sessions', { state: 'open' })).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'p11kms_session_pool_sessions', { state: 'in_use' })).toBe(0);
    expect(sample(after, 'p11kms_session_pool_waiting')).toBe(0);
    // The metadata database as this node sees it (the PostgreSQL run: a one-node cluster, so its leader).
    expect(sample(after, 'p11kms_database_up', { kind: testStoreIsPostgres ? 'postgresql' : 'sqlite' })).toBe(1);
    expect(sample(after, 'p11kms_cluster_leader')).toBe(1);
    if (testStoreIsPostgres) expect(after).toMatch(/^p11kms_database_last_confirmed_seconds\{kind="postgresql"\} \d/m);
    else expect(after).not.toMatch(/^p11kms_database_last_confirmed_seconds/m);
    expect(delta('p11kms_job_runs_total', { job: 'rotation' })).toBe(1);
    expect(delta('p11kms_job_failures_total', { job: 'deletion' })).toBe(1);
    expect(after).toMatch(/^process_resident_memory_bytes \d+/m);
    // Nothing secret in a scrape.
    expect(after).not.toContain(h.token.userPin);
    expect(after).not.toContain(BEARER);
  });

  it('answers on the Unix socket without credentials', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      request({ socketPath: h.daemon.socketPath, path: '/metrics' }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(`${res.statusCode}\n${b}`));
      })
        .on('error', reject)
        .end();
    });
    expect(body).toMatch(/^200\n/);
    expect(body).toContain('p11kms_requests_total');
  });

  it.skipIf(!external)('from a non-loopback address needs the configured bearer token', async () => {
    expect((await scrape(external)).status).toBe(401);
    expect((await scrape(external, h.daemon.port, 'Bearer wrong-token')).status).toBe(401);
    expect((await scrape(external, h.daemon.port, `Bearer ${BEARER}`)).status).toBe(200);
  });

  it.skipIf(!external)('from a non-loopback address is refused when no bearer token is configured', async () => {
    const app = express().use(metricsRouter(undefined));
    const server = app.listen(0, '0.0.0.0');
    await new Promise((r) => server.once('listening', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const res = await scrape(external, port);
      expect(res.status).toBe(403);
      expect(res.text).toMatch(/only on loopback and the Unix socket/);
      expect((await scrape('127.0.0.1', port)).status).toBe(200);
    } finally {
      server.close();
    }
  });

  it('treats only 127.0.0.0/8, ::1 and their IPv4-mapped forms as loopback', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a)).toBe(true);
    for (const a of ['10.0.0.1', '::ffff:10.0.0.1', '0.0.0.0', '::', 'fe80::1', '', undefined]) expect(isLoopback(a)).toBe(false);
  });
});
