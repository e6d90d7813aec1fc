/**
 * Mutual TLS on the AWS API listener: the real daemon requiring client certificates from the
 * development CA, with a CN → SigV4 principal mapping. Accepted: a mapped certificate with its
 * principal's key. Refused before any request is read: no certificate, a certificate of another
 * CA, a certificate whose CN is not mapped. Refused with AccessDeniedException: a valid
 * certificate used with another principal's access key (a stolen key alone is not enough).
 */
import { CreateKeyCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requests } from '../../src/metrics/metrics.js';
import { ACCOUNT, failure, startHarness, type Harness } from '../helpers/daemon.js';
import { createPrincipal, type TestPrincipal } from '../helpers/principals.js';
import { devTls, handshake, httpsClient, unixSocketClient, type DevTls } from '../helpers/tls.js';

const run = promisify(execFile);
let h: Harness;
let ca: DevTls;
let stranger: DevTls;
let user: TestPrincipal;
let keyId: string;
const USER_ARN = `arn:aws:iam::${ACCOUNT}:user/app1-user`;

const totalRequests = async () => (await requests.get()).values.reduce((n, v) => n + v.value, 0);

beforeAll(async () => {
  ca = devTls(['app1', 'admin-host', 'unmapped']);
  stranger = devTls(['app1']);
  h = await startHarness({
    env: {
      P11KMS_TLS_CERT: ca.files.cert,
      P11KMS_TLS_KEY: ca.files.key,
      P11KMS_TLS_CLIENT_CA: ca.files.ca,
      P11KMS_TLS_CLIENT_PRINCIPALS: JSON.stringify({ app1: [USER_ARN], 'admin-host': [`arn:aws:iam::${ACCOUNT}:root`] }),
    },
  });
  const admin = httpsClient(h.endpoint, { ca: ca.ca, ...ca.clients['admin-host'] });
  keyId = (await admin.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  user = await createPrincipal(h, { type: 'user', name: 'app1-user', identity: [{ Effect: 'Allow', Action: 'kms:Encrypt', Resource: '*' }] });
  expect(user.arn).toBe(USER_ARN);
});
afterAll(async () => {
  await h?.stop();
  ca?.cleanup();
  stranger?.cleanup();
});

const encrypt = (kms: ReturnType<typeof httpsClient>) => kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('mtls') }));

describe('mutual TLS', () => {
  it('serves a client certificate from the CA whose CN maps to the signing principal', async () => {
    const out = await encrypt(httpsClient(h.endpoint, { ca: ca.ca, ...ca.clients.app1 }, user));
    expect(out.KeyId).toContain(keyId);
    await encrypt(httpsClient(h.endpoint, { ca: ca.ca, ...ca.clients['admin-host'] }));
  });

  it('serves boto3 with a client certificate (botocore Config client_cert) and refuses it without one', async () => {
    const dir = mkdtempSync(join(ca.dir, 'boto3-'));
    writeFileSync(join(dir, 'app1.pem'), ca.clients.app1!.cert);
    writeFileSync(join(dir, 'app1.key'), ca.clients.app1!.key);
    const script = `
import boto3, botocore.config, botocore.exceptions, sys
def kms(cert):
    return boto3.client('kms', endpoint_url=sys.argv[1], region_name='us-east-1', verify=sys.argv[2],
                        aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4],
                        config=botocore.config.Config(client_cert=cert, retries={'max_attempts': 1}))
print(kms((sys.argv[6], sys.argv[7])).encrypt(KeyId=sys.argv[5], Plaintext=b'boto3 mtls')['KeyId'])
try:
    kms(None).encrypt(KeyId=sys.argv[5], Plaintext=b'no certificate')
    print('served without a certificate')
except (botocore.exceptions.SSLError, botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError) as e:
    print('refused', type(e).__name__)
`;
    const { stdout } = await run('python3', ['-c', script, h.endpoint, ca.files.ca, user.accessKeyId, user.secretAccessKey, keyId,
      join(dir, 'app1.pem'), join(dir, 'app1.key')], { env: { PATH: process.env.PATH, HOME: dir, AWS_CONFIG_FILE: join(dir, 'none') }, timeout: 60_000 });
    const [served, refused] = stdout.trim().split('\n');
    expect(served).toContain(keyId);
    expect(refused).toMatch(/^refused /);
  }, 90_000);

  it('refuses, before reading any request, clients without a certificate, from another CA, or with an unmapped CN', async () => {
    const before = await totalRequests();
    for (const client of [undefined, stranger.clients.app1, ca.clients.unmapped]) {
      const e = await failure(encrypt(httpsClient(h.endpoint, { ca: ca.ca, ...client }, user)));
      // A connection-level failure (TLS alert or reset), not an HTTP answer.
      expect(e.$metadata?.httpStatusCode).toBeUndefined();
      expect(e.message).toMatch(/certificate|socket|ECONNRESET|EPIPE|closed|hang up/i);
    }
    // At the socket: the connection closes without a byte of HTTP, although a request was sent at once.
    // (TLS 1.3: the client's side of the handshake completes before the server has checked its certificate.)
    const conn = await handshake(h.daemon.port, { ca: ca.ca, ...ca.clients.unmapped });
    {
      const got = await new Promise<string>((resolve) => {
        let data = '';
        conn.socket.on('data', (d: Buffer) => (data += d.toString()));
        conn.socket.on('error', () => undefined);
        conn.socket.on('close', () => resolve(data));
        conn.socket.write('POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}');
      });
      expect(got).toBe('');
    }
    expect(await totalRequests()).toBe(before);
  });

  it('refuses a valid certificate used with another principal’s access key', async () => {
    // app1's certificate with the root's key, and the admin host's certificate with app1's key.
    const e1 = await failure(encrypt(httpsClient(h.endpoint, { ca: ca.ca, ...ca.clients.app1 })));
    expect([e1.name, e1.$metadata?.httpStatusCode]).toEqual(['AccessDeniedException', 400]);
    expect(e1.message).toBe(`The client certificate of this connection is not mapped to arn:aws:iam::${ACCOUNT}:root.`);
    const e2 = await failure(encrypt(httpsClient(h.endpoint, { ca: ca.ca, ...ca.clients['admin-host'] }, user)));
    expect(e2.name).toBe('AccessDeniedException');
  });

  it('leaves the Unix socket (local, mode 0600, no TLS) outside the mapping', async () => {
    await unixSocketClient(h.daemon.socketPath).send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('local') }));
  });
});
