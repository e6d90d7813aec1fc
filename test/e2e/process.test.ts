import { CreateKeyCommand, DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, client, REGION } from '../helpers/daemon.js';
import { createTempToken, SOFTHSM_MODULE, type TempToken } from '../helpers/softhsm.js';

const ROOT = resolve(import.meta.dirname, '../..');
let token: TempToken;
let child: ChildProcess;
let output = '';
let port = 0;
let socketPath = '';
let exit: Promise<number | null>;

beforeAll(async () => {
  token = createTempToken();
  socketPath = join(token.dir, 'run', 'kms.sock');
  child = spawn(process.execPath, [join(ROOT, 'dist/entry.cjs'), 'serve'], {
    env: {
      PATH: process.env.PATH,
      SOFTHSM2_CONF: token.conf,
      P11KMS_DATA_DIR: join(token.dir, 'data'),
      P11KMS_PORT: '0',
      P11KMS_SOCKET: socketPath,
      P11KMS_PKCS11_MODULE: SOFTHSM_MODULE,
      P11KMS_TOKEN_LABEL: token.label,
      P11KMS_PIN_FILE: join(token.dir, 'softhsm', 'user.pin'),
      P11KMS_LOG_LEVEL: 'debug',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  exit = new Promise((r) => child.once('exit', (code) => r(code)));
  const collect = (d: Buffer) => {
    output += d.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const deadline = Date.now() + 20_000;
  while (!/"msg":"p11kms listening"/.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`daemon did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  port = JSON.parse(output.split('\n').find((l) => l.includes('p11kms listening'))!).port;
});

afterAll(() => {
  if (child?.exitCode === null) child.kill('SIGKILL');
  token?.cleanup();
});

/** An SDK client that talks HTTP over the Unix socket. */
function socketClient(): KMSClient {
  const agent = new Agent({ keepAlive: true });
  (agent as unknown as { createConnection: () => unknown }).createConnection = () => connect(socketPath);
  return new KMSClient({
    endpoint: 'http://localhost',
    region: REGION,
    credentials: ADMIN,
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ httpAgent: agent }),
  });
}

describe('the daemon as a process', () => {
  it('serves on a Unix socket created with mode 0600', async () => {
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    const body = await new Promise<string>((resolveBody, reject) => {
      request({ socketPath, path: '/health/ready' }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolveBody(`${res.statusCode} ${b}`));
      })
        .on('error', reject)
        .end();
    });
    expect(body).toMatch(/^200 .*"status":"ready"/);
    const kms = socketClient();
    const key = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const enc = await kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('over the socket') }));
    // The same daemon over TCP decrypts it.
    const dec = await client(`http://127.0.0.1:${port}`).send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('over the socket');
  });

  it('finishes in-flight requests on SIGTERM, then exits 0 without logging secrets', async () => {
    const kms = client(`http://127.0.0.1:${port}`);
    const key = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const plaintext = 'plaintext-that-must-not-be-logged';
    const inFlight = Array.from({ length: 40 }, () =>
      kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from(plaintext) })).then(
        () => 'ok',
        (e: Error & { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode ?? 'connection',
      ),
    );
    await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGTERM');
    const outcomes = await Promise.all(inFlight);
    expect(await exit).toBe(0);
    // A request either completed or was never accepted; none was cut off with a server error.
    expect(outcomes.filter((o) => typeof o === 'number')).toEqual([]);
    expect(outcomes).toContain('ok');
    expect(output).toContain('"msg":"stopped"');
    for (const secret of [token.userPin, ADMIN.secretAccessKey, plaintext, Buffer.from(plaintext).toString('base64')]) {
      expect(output).not.toContain(secret);
    }
  });
});
