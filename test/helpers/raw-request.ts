/**
 * Raw AWS JSON 1.1 requests, signed with @smithy/signature-v4 exactly as an AWS SDK signs them,
 * so tests can send what no SDK would (wrong types, bad bytes, extra headers) and read the wire answer.
 */
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { expect } from 'vitest';
import { ADMIN, REGION, type Harness } from './daemon.js';

export const JSON_11 = 'application/x-amz-json-1.1';
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface SignOpts {
  credentials?: Credentials;
  region?: string;
  signingDate?: Date;
  /** Body put on the wire (default: the signed body). */
  sendBody?: string | Uint8Array;
  /** null removes the Authorization header; a string replaces it. */
  authorization?: string | null;
  /** Extra headers, signed with the rest. */
  headers?: Record<string, string>;
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

export async function readResponse(res: Response): Promise<RawResponse> {
  const body = await res.text();
  let json: unknown;
  try {
    json = body.length > 0 ? JSON.parse(body) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text: body, json };
}

/** A SigV4-signed POST / against the harness, exactly as an AWS SDK would send it (unless opts say otherwise). */
export async function signedPost(h: Harness, target: string | undefined, body: string | Uint8Array, opts: SignOpts = {}): Promise<RawResponse> {
  const url = new URL(h.endpoint);
  const headers: Record<string, string> = { host: url.host, 'content-type': JSON_11, ...opts.headers };
  if (target !== undefined) headers['x-amz-target'] = target;
  const request = new HttpRequest({
    method: 'POST',
    protocol: 'http:',
    hostname: url.hostname,
    port: Number(url.port),
    path: '/',
    headers,
    body,
  });
  const signer = new SignatureV4({
    service: 'kms',
    region: opts.region ?? REGION,
    credentials: opts.credentials ?? ADMIN,
    sha256: Sha256,
  });
  const signed = await signer.sign(request, opts.signingDate ? { signingDate: opts.signingDate } : {});
  const wire: Record<string, string> = {};
  // fetch sets Host itself (to the same host:port that was signed).
  for (const [k, v] of Object.entries(signed.headers)) if (k.toLowerCase() !== 'host') wire[k.toLowerCase()] = v;
  if (opts.authorization === null) delete wire['authorization'];
  else if (opts.authorization !== undefined) wire['authorization'] = opts.authorization;
  const res = await fetch(`${h.endpoint}/`, { method: 'POST', headers: wire, body: wireBody(opts.sendBody ?? body) });
  return readResponse(res);
}

export const op = (name: string) => `TrentService.${name}`;

/** An AWS JSON error: the status, exactly `{__type, message}`, a request id and the JSON 1.1 content type. */
export function expectAwsError(res: RawResponse, type: string, status = 400): string {
  expect(res.status, res.text).toBe(status);
  expect(res.json, res.text).toBeTypeOf('object');
  expect(Object.keys(res.json).sort()).toEqual(['__type', 'message']);
  expect(res.json.__type).toBe(type);
  expect(res.json.message).toBeTypeOf('string');
  expect(res.json.message.length).toBeGreaterThan(0);
  expect(res.headers.get('x-amzn-requestid')).toMatch(/\S/);
  expect(res.headers.get('content-type')).toContain(JSON_11);
  return res.json.message as string;
}


/** fetch takes bytes as a Blob (its Uint8Array typing is narrower than Node's Buffer). */
const wireBody = (b: string | Uint8Array): string | Blob => (typeof b === 'string' ? b : new Blob([new Uint8Array(b)]));
