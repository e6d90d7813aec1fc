import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';

/** XKS SigV4 credentials in the spec's formats (access key: A–Z2–7; secret: 43–64 Base64 characters). */
export interface XksCreds {
  accessKeyId: string;
  secretAccessKey: string;
}

export const CRED_A1: XksCreds = { accessKeyId: 'AKIAXKSTENANTAONE2345', secretAccessKey: 'FYtE5EFA5FT0mCc3DrGUe2sti527BitkQ0Zr9MO9fvE' };
export const CRED_A2: XksCreds = { accessKeyId: 'AKIAXKSTENANTATWO2345', secretAccessKey: 'VU6W2byoiBrhDqNGbx703oL0syCAmhlQgwNUT123456=' };
export const CRED_B1: XksCreds = { accessKeyId: 'BKIAXKSTENANTBONE2345', secretAccessKey: 'Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5' };

export interface TlsMaterial {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Client certificates signed by the CA: KMS's subject name and another one. */
  kmsClient: { cert: string; key: string };
  otherClient: { cert: string; key: string };
  /** A client certificate from an unrelated, self-signed CA. */
  strangerClient: { cert: string; key: string };
  files: { caCert: string; serverCert: string; serverKey: string };
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A throw-away CA, a server certificate for localhost/127.0.0.1, and client certificates, made with the openssl CLI. */
export function makeTlsMaterial(): TlsMaterial {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-xks-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=p11kms test CA'], dir);
  const signed = (name: string, subject: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`,
      '-days', '2', '-extfile', `${name}.ext`], dir);
  };
  signed('server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  signed('kms', '/CN=cks.kms.us-east-1.amazonaws.com', 'extendedKeyUsage=clientAuth\n');
  signed('other', '/CN=somebody-else.example.com', 'extendedKeyUsage=clientAuth\n');
  openssl(['req', '-x509', ...ec, '-keyout', 'stranger.key', '-out', 'stranger.pem', '-days', '2',
    '-subj', '/CN=cks.kms.us-east-1.amazonaws.com'], dir);
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    dir,
    caCert: read('ca.pem'),
    serverCert: read('server.pem'),
    serverKey: read('server.key'),
    kmsClient: { cert: read('kms.pem'), key: read('kms.key') },
    otherClient: { cert: read('other.pem'), key: read('other.key') },
    strangerClient: { cert: read('stranger.pem'), key: read('stranger.key') },
    files: { caCert: join(dir, 'ca.pem'), serverCert: join(dir, 'server.pem'), serverKey: join(dir, 'server.key') },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface XksTarget {
  scheme: 'https' | 'http';
  port: number;
  /** CA to trust (https). */
  ca?: string;
  /** Client certificate for mutual TLS. */
  client?: { cert: string; key: string };
}

export interface XksCallOptions {
  creds?: XksCreds | null;
  method?: string;
  region?: string;
  service?: string;
  signingDate?: Date;
  /** Bytes put on the wire instead of the signed body. */
  sendBody?: string;
}

export interface XksResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

const agents = new Map<string, Agent>();

/** A SigV4-signed (service kms-xks-proxy) request, as AWS KMS sends it, over real HTTP(S). */
export async function xksCall(target: XksTarget, path: string, body: unknown, opts: XksCallOptions = {}): Promise<XksResponse> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const host = `localhost:${target.port}`;
  const method = opts.method ?? 'POST';
  let headers: Record<string, string> = { host, 'content-type': 'application/json' };
  if (opts.creds !== null) {
    const signer = new SignatureV4({
      service: opts.service ?? 'kms-xks-proxy',
      region: opts.region ?? 'us-east-1',
      credentials: opts.creds ?? CRED_A1,
      sha256: Sha256,
    });
    const signed = await signer.sign(
      new HttpRequest({ method, protocol: `${target.scheme}:`, hostname: 'localhost', port: target.port, path, headers, body: text }),
      opts.signingDate ? { signingDate: opts.signingDate } : {},
    );
    headers = signed.headers as Record<string, string>;
  }
  const wire = opts.sendBody ?? text;
  headers['content-length'] = String(Buffer.byteLength(wire));
  return new Promise<XksResponse>((resolve, reject) => {
    const common = { host: '127.0.0.1', port: target.port, path, method, headers };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const t = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = t ? JSON.parse(t) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: t, json });
      });
      res.on('error', reject);
    };
    let req;
    if (target.scheme === 'https') {
      const agentKey = `${target.port}|${target.client?.cert ?? ''}`;
      let agent = agents.get(agentKey);
      if (!agent) {
        agent = new Agent({ keepAlive: true, ca: target.ca, servername: 'localhost', cert: target.client?.cert, key: target.client?.key });
        agents.set(agentKey, agent);
      }
      req = httpsRequest({ ...common, agent, servername: 'localhost' }, onResponse);
    } else {
      req = httpRequest(common, onResponse);
    }
    req.on('error', reject);
    req.end(wire);
  });
}

export function closeAgents(): void {
  for (const a of agents.values()) a.destroy();
  agents.clear();
}

export const b64 = (b: Buffer | string) => (typeof b === 'string' ? Buffer.from(b, 'utf8') : b).toString('base64');
export const unb64 = (s: string) => Buffer.from(s, 'base64');

/** requestMetadata as KMS sends it for a key operation. */
export function keyMeta(kmsOperation: string, extra: Record<string, string> = {}) {
  return {
    awsPrincipalArn: 'arn:aws:iam::123456789012:user/Alice',
    kmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    kmsOperation,
    kmsRequestId: `req-${Math.random().toString(16).slice(2)}`,
    kmsViaService: 'ebs',
    ...extra,
  };
}

/** Appendix C, computed independently of src/ (client side, as KMS does). */
export function expectedCdiv(aad: Buffer | undefined, out: { ciphertextMetadata?: string; initializationVector: string; ciphertext: string; authenticationTag: string }): string {
  const h = createHash('sha256');
  if (aad) h.update(aad);
  if (out.ciphertextMetadata) h.update(unb64(out.ciphertextMetadata));
  return h.update(unb64(out.initializationVector)).update(unb64(out.ciphertext)).update(unb64(out.authenticationTag)).digest('base64');
}
