import { createHash, createHmac } from 'node:crypto';
import type { Clock } from '../../clock.js';
import { Errors, KmsError } from '../../errors.js';
import type { PeerLink } from '../../kms/context.js';
import type { Secret } from '../../secret.js';

/**
 * The outgoing side of the peer protocol (issue 13, two sites): calls a peer deployment's AWS
 * JSON front door, signed with SigV4 under the credentials that peer issued to this one and
 * scoped to the peer's region. The peer answers as any KMS endpoint does; its errors come back
 * as KmsErrors with their codes, and a peer that cannot be reached as PeerUnreachable.
 */

export interface PeerEndpoint {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: Secret;
}

/** The peer did not answer (connection refused, timeout) or answered with a fault (5xx). */
export class PeerUnreachable extends KmsError {}

const TIMEOUT_MS = 10_000;

export class PeerClient implements PeerLink {
  constructor(
    private readonly peers: Record<string, PeerEndpoint>,
    private readonly clock: Clock,
    private readonly principals: readonly string[] = [],
  ) {}

  isPeerPrincipal(arn: string): boolean {
    return this.principals.includes(arn);
  }

  serves(region: string): boolean {
    return Object.hasOwn(this.peers, region);
  }

  regions(): string[] {
    return Object.keys(this.peers);
  }

  async call(region: string, operation: string, input: Record<string, unknown>): Promise<Record<string, unknown>> {
    const peer = this.peers[region];
    if (!peer) throw Errors.unsupported(`The Region ${region} is not served by a peer of this key store.`);
    const url = new URL(peer.endpoint);
    const body = JSON.stringify(input);
    const headers: Record<string, string> = {
      'content-type': 'application/x-amz-json-1.1',
      host: url.host,
      'x-amz-date': amzDate(this.clock.now().getTime()),
      'x-amz-target': `TrentService.${operation}`,
    };
    headers.authorization = authorization(peer, region, headers, body);
    let res: Response;
    try {
      res = await fetch(new URL('/', url), { method: 'POST', headers, body, signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (e) {
      throw new PeerUnreachable('DependencyTimeoutException', `The peer serving ${region} cannot be reached: ${(e as Error).message}`, 503);
    }
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      /* a non-JSON answer is reported below by its status */
    }
    if (res.ok) return json;
    const code = typeof json.__type === 'string' ? json.__type.split('#').pop()! : 'KMSInternalException';
    const message = `The peer serving ${region} answered ${code}: ${String(json.message ?? text).slice(0, 300)}`;
    if (res.status >= 500) throw new PeerUnreachable(code, message, 503);
    throw new KmsError(code, message, res.status);
  }
}

const amzDate = (ms: number): string => new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

/** SigV4 for `POST /` with the four headers above (what the verifier in sigv4.ts checks). */
function authorization(peer: PeerEndpoint, region: string, headers: Record<string, string>, body: string): string {
  const names = Object.keys(headers).sort();
  const canonical = ['POST', '/', '', ...names.map((n) => `${n}:${headers[n]!.trim()}`), '', names.join(';'), sha256(body)].join('\n');
  const date = headers['x-amz-date']!;
  const scope = `${date.slice(0, 8)}/${region}/kms/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, sha256(canonical)].join('\n');
  let key: Buffer = hmac(`AWS4${peer.secretAccessKey.reveal()}`, date.slice(0, 8));
  for (const part of [region, 'kms', 'aws4_request']) key = hmac(key, part);
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  return `AWS4-HMAC-SHA256 Credential=${peer.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();
