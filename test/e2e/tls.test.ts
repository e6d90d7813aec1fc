/**
 * HTTPS on the AWS API listener, end to end: the real daemon with a certificate from the
 * development CA (scripts/dev-tls), the AWS SDK, the AWS CLI and boto3 trusting that CA; a
 * plain-HTTP request to the TLS port; aws:SecureTransport in identity and key policies (HTTPS
 * against the plain Unix socket); and certificate reload (file change and explicit, as SIGHUP
 * does) under load, for the AWS API and the XKS listener, with no failed request.
 */
import { CreateKeyCommand, DecryptCommand, EncryptCommand, GenerateDataKeyCommand, PutKeyPolicyCommand } from '@aws-sdk/client-kms';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, ADMIN, failure, startHarness, type Harness } from '../helpers/daemon.js';
import { createPrincipal, policyDoc } from '../helpers/principals.js';
import { devTls, handshake, httpsClient, serialOf, unixSocketClient, type DevTls } from '../helpers/tls.js';
import { closeAgents, CRED_A1, xksCall } from '../helpers/xks.js';

const run = promisify(execFile);
let h: Harness;
let ca: DevTls;
/** The files the daemon serves (copies, replaced by rename in the reload tests). */
let live: string;
let keyId: string;

/** A new server certificate of the same CA, written where the daemon reads it (cert, then key, each atomically). */
function rotate(into: { cert: string; key: string }): string {
  const next = mkdtempSync(join(live, 'next-'));
  copyFileSync(ca.files.ca, join(next, 'ca.pem'));
  copyFileSync(join(ca.dir, 'ca.key'), join(next, 'ca.key'));
  const made = devTls([], next);
  renameSync(made.files.cert, `${into.cert}.tmp`);
  renameSync(`${into.cert}.tmp`, into.cert);
  renameSync(made.files.key, `${into.key}.tmp`);
  renameSync(`${into.key}.tmp`, into.key);
  made.cleanup();
  return serialOf(into.cert);
}

const api = () => ({ cert: join(live, 'api.pem'), key: join(live, 'api.key') });
const xks = () => ({ cert: join(live, 'xks.pem'), key: join(live, 'xks.key') });

beforeAll(async () => {
  ca = devTls();
  live = mkdtempSync(join(tmpdir(), 'p11kms-tls-live-'));
  for (const f of [api(), xks()]) {
    copyFileSync(ca.files.cert, f.cert);
    copyFileSync(ca.files.key, f.key);
  }
  h = await startHarness({
    env: {
      P11KMS_TLS_CERT: api().cert,
      P11KMS_TLS_KEY: api().key,
      P11KMS_TLS_WATCH_INTERVAL_MS: '100',
      P11KMS_XKS_ENABLED: 'true',
      P11KMS_XKS_PORT: '0',
      P11KMS_XKS_TLS_CERT: xks().cert,
      P11KMS_XKS_TLS_KEY: xks().key,
      P11KMS_XKS_ACCESS_KEY_ID: CRED_A1.accessKeyId,
      P11KMS_XKS_SECRET_ACCESS_KEY: CRED_A1.secretAccessKey,
    },
  });
  expect(h.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  keyId = (await httpsClient(h.endpoint, ca).send(new CreateKeyCommand({ Description: 'tls test' }))).KeyMetadata!.KeyId!;
});
afterAll(async () => {
  closeAgents();
  await h?.stop();
  ca?.cleanup();
  if (live) rmSync(live, { recursive: true, force: true });
});

describe('HTTPS on the AWS API listener', () => {
  it('serves the AWS SDK over TLS 1.3, accepts TLS 1.2 and refuses older versions', async () => {
    const kms = httpsClient(h.endpoint, ca);
    const enc = await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('over https'), EncryptionContext: { a: 'b' } }));
    const dec = await kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { a: 'b' } }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('over https');
    const dk = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    expect(dk.Plaintext).toHaveLength(32);

    const tls13 = await handshake(h.daemon.port, { ca: ca.ca });
    expect(tls13.protocol).toBe('TLSv1.3');
    tls13.socket.destroy();
    const tls12 = await handshake(h.daemon.port, { ca: ca.ca, maxVersion: 'TLSv1.2' });
    expect(tls12.protocol).toBe('TLSv1.2');
    tls12.socket.destroy();
    await expect(handshake(h.daemon.port, { ca: ca.ca, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })).rejects.toThrow();
    // Without the development CA the certificate is not trusted.
    await expect(handshake(h.daemon.port, {})).rejects.toThrow(/self[- ]signed|unable to (get|verify)/i);
  });

  it('serves the AWS CLI with --endpoint-url https://… and --ca-bundle (or AWS_CA_BUNDLE)', async () => {
    const dir = mkdtempSync(join(live, 'cli-'));
    writeFileSync(join(dir, 'plain.txt'), 'from the aws cli');
    const env = {
      PATH: process.env.PATH, HOME: dir, AWS_ACCESS_KEY_ID: ADMIN.accessKeyId, AWS_SECRET_ACCESS_KEY: ADMIN.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1', AWS_CONFIG_FILE: join(dir, 'none'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
    };
    const aws = (args: string[], extra: Record<string, string> = {}) =>
      run('aws', ['kms', ...args, '--endpoint-url', h.endpoint, '--output', 'json'], { env: { ...env, ...extra }, cwd: dir, timeout: 60_000 });
    const enc = JSON.parse((await aws(['encrypt', '--key-id', keyId, '--plaintext', 'fileb://plain.txt', '--ca-bundle', ca.files.ca])).stdout);
    writeFileSync(join(dir, 'blob'), Buffer.from(enc.CiphertextBlob, 'base64'));
    const dec = JSON.parse((await aws(['decrypt', '--ciphertext-blob', 'fileb://blob'], { AWS_CA_BUNDLE: ca.files.ca })).stdout);
    expect(Buffer.from(dec.Plaintext, 'base64').toString()).toBe('from the aws cli');
    expect(dec.KeyId).toContain(keyId);
  }, 90_000);

  it('serves boto3 with verify=<the development CA>', async () => {
    const script = `
import boto3, json, sys
kms = boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1', verify=sys.argv[2],
                   aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4])
blob = kms.encrypt(KeyId=sys.argv[5], Plaintext=b'from boto3', EncryptionContext={'app': 'boto3'})['CiphertextBlob']
out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={'app': 'boto3'})
dk = kms.generate_data_key(KeyId=sys.argv[5], NumberOfBytes=16)
print(json.dumps({'plaintext': out['Plaintext'].decode(), 'keyId': out['KeyId'], 'dataKeyBytes': len(dk['Plaintext'])}))
`;
    const { stdout } = await run('python3', ['-c', script, h.endpoint, ca.files.ca, ADMIN.accessKeyId, ADMIN.secretAccessKey, keyId], {
      env: { PATH: process.env.PATH, HOME: live, AWS_CONFIG_FILE: join(live, 'none'), AWS_SHARED_CREDENTIALS_FILE: join(live, 'none') },
      timeout: 60_000,
    });
    expect(JSON.parse(stdout)).toMatchObject({ plaintext: 'from boto3', dataKeyBytes: 16 });
    expect(JSON.parse(stdout).keyId).toContain(keyId);
  }, 90_000);

  it('answers a plain-HTTP request to the TLS port with a 400 saying so, and keeps serving HTTPS', async () => {
    const answer = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
      request({ host: '127.0.0.1', port: h.daemon.port, method: 'POST', path: '/', headers: { 'content-type': 'application/x-amz-json-1.1' } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      })
        .on('error', reject)
        .end('{}');
    });
    expect(answer).toEqual({ status: 400, body: expect.stringContaining('HTTPS only') });
    // The SDK pointed at http:// fails promptly instead of hanging.
    await failure(httpsClient(h.endpoint.replace('https:', 'http:'), ca).send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('x') })));
    await httpsClient(h.endpoint, ca).send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('still serving') }));
  });

  it('serves the REST routes over HTTPS too, SigV4-signed (curl --aws-sigv4 --cacert)', async () => {
    const { stdout } = await run('curl', [
      '-sS', '--fail-with-body', '--cacert', ca.files.ca, '--aws-sigv4', 'aws:amz:us-east-1:kms',
      '--user', `${ADMIN.accessKeyId}:${ADMIN.secretAccessKey}`, '-H', 'Content-Type: application/json',
      '-d', JSON.stringify({ plaintext: Buffer.from('rest over tls').toString('base64') }), `${h.endpoint}/v1/keys/${keyId}/encrypt`,
    ], { timeout: 20_000 });
    expect(JSON.parse(stdout)).toMatchObject({ keyId: expect.stringContaining(keyId), encryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
  });
});

describe('aws:SecureTransport', () => {
  it('is true over HTTPS and false on the plain Unix socket, in identity and key policies', async () => {
    const user = await createPrincipal(h, {
      type: 'user',
      name: 'tls-user',
      identity: [{ Effect: 'Allow', Action: ['kms:Encrypt'], Resource: '*', Condition: { Bool: { 'aws:SecureTransport': 'true' } } }],
    });
    const overTls = httpsClient(h.endpoint, ca, user);
    const overSocket = unixSocketClient(h.daemon.socketPath, user);
    await overTls.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('tls') }));
    const denied = await failure(overSocket.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('socket') })));
    expect(denied.name).toBe('AccessDeniedException');

    // The usual "deny unless TLS" key policy binds the account root too.
    const admin = httpsClient(h.endpoint, ca);
    const guarded = (await admin.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await admin.send(new PutKeyPolicyCommand({
      KeyId: guarded,
      PolicyName: 'default',
      Policy: policyDoc([
        { Sid: 'Enable IAM policies', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: 'kms:*', Resource: '*' },
        { Sid: 'TLS only', Effect: 'Deny', Principal: '*', Action: 'kms:*', Resource: '*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } },
      ]),
    }));
    await admin.send(new EncryptCommand({ KeyId: guarded, Plaintext: Buffer.from('tls') }));
    const rootDenied = await failure(unixSocketClient(h.daemon.socketPath).send(new EncryptCommand({ KeyId: guarded, Plaintext: Buffer.from('socket') })));
    expect(rootDenied.name).toBe('AccessDeniedException');
    expect(rootDenied.message).toMatch(/explicit deny/i);
  });
});

describe('certificate reload', () => {
  it('serves a renewed certificate to new connections under load, with no failed request', async () => {
    const first = await handshake(h.daemon.port, { ca: ca.ca });
    first.socket.destroy();
    const before = first.serial;
    expect(before).toBe(serialOf(ca.files.cert));
    let stop = false;
    const stats = { ok: 0, failed: [] as string[] };
    // Keep-alive clients hold their connections across the reload; the others handshake per request.
    const worker = async (keepAlive: boolean) => {
      const kms = httpsClient(h.endpoint, ca, ADMIN, keepAlive);
      while (!stop) {
        try {
          await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('under load') }));
          stats.ok++;
        } catch (e) {
          stats.failed.push((e as Error).message);
        }
      }
      kms.destroy();
    };
    const workers = [true, true, true, false, false, false].map(worker);
    const waitFor = async (serial: string) => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const c = await handshake(h.daemon.port, { ca: ca.ca });
        c.socket.destroy();
        if (c.serial === serial) return;
        if (Date.now() > deadline) throw new Error(`still serving ${c.serial}, expected ${serial}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await new Promise((r) => setTimeout(r, 300));
      // 1. Files replaced on disk: the watcher reloads them.
      const second = rotate(api());
      expect(second).not.toBe(before);
      await waitFor(second);
      const atSecond = stats.ok;
      // 2. Explicit reload (what SIGHUP calls), not waiting for the watcher.
      const third = rotate(api());
      expect(h.daemon.reloadTls().api).toBe(true);
      await waitFor(third);
      await new Promise((r) => setTimeout(r, 300));
      expect(stats.ok).toBeGreaterThan(atSecond);
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    expect(stats.failed).toEqual([]);
    expect(stats.ok).toBeGreaterThan(20);
  }, 60_000);

  it('keeps the previous certificate when the new files do not form a pair', async () => {
    const current = await handshake(h.daemon.port, { ca: ca.ca });
    current.socket.destroy();
    const serving = current.serial;
    const other = mkdtempSync(join(live, 'other-'));
    const stranger = devTls([], other);
    copyFileSync(stranger.files.key, `${api().key}.tmp`);
    renameSync(`${api().key}.tmp`, api().key);
    expect(h.daemon.reloadTls().api).toBe(false);
    const after = await handshake(h.daemon.port, { ca: ca.ca });
    after.socket.destroy();
    expect(after.serial).toBe(serving);
    await httpsClient(h.endpoint, ca).send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('still the old pair') }));
  });

  it('reloads the XKS listener too', async () => {
    const port = h.daemon.xks!.port;
    const before = await handshake(port, { ca: ca.ca });
    before.socket.destroy();
    const renewed = rotate(xks());
    expect(renewed).not.toBe(before.serial);
    expect(h.daemon.reloadTls().xks).toBe(true);
    const after = await handshake(port, { ca: ca.ca });
    after.socket.destroy();
    expect(after.serial).toBe(renewed);
    const res = await xksCall({ scheme: 'https', port, ca: ca.ca }, '/kms/xks/v1/health', { requestMetadata: { kmsOperation: 'CreateCustomKeyStore', kmsRequestId: 'r1' } });
    expect(res.status).toBe(200);
  });
});
