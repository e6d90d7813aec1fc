import { randomUUID } from 'node:crypto';
import express, { type Request, type Response, type NextFunction } from 'express';
import type { CredentialRegistry, Credential } from '../../authz/credentials.js';
import type { Clock } from '../../clock.js';
import { Errors, KmsError, isKmsError } from '../../errors.js';
import type { KmsDeps, RequestContext } from '../../kms/context.js';
import { operations } from '../../kms/operations.js';
import { parse } from '../../kms/validation.js';
import type { Logger } from '../../log.js';
import { SigV4Verifier } from './sigv4.js';
import { toWire } from './wire.js';

const TARGET_PREFIX = 'TrentService.';
const CONTENT_TYPE = 'application/x-amz-json-1.1';
/** Far above any valid KMS request (6 KiB blobs, 32 KiB policies), small enough to bound memory. */
const MAX_BODY = '512kb';

export interface AwsJsonOptions {
  deps: KmsDeps;
  credentials: CredentialRegistry;
  clock: Clock;
  region: string;
  log: Logger;
}

/**
 * The AWS KMS JSON 1.1 front door: authenticate (SigV4), decode, call the core, encode. It
 * knows nothing of crypto; the core knows nothing of HTTP.
 */
export function awsJsonRouter(opts: AwsJsonOptions): express.Router {
  const verifier = new SigV4Verifier({
    service: 'kms',
    region: opts.region,
    clock: opts.clock,
    lookup: (id) => opts.credentials.lookup(id),
  });
  const router = express.Router();
  router.post('/', express.raw({ type: () => true, limit: MAX_BODY }), (req, res) => {
    const requestId = requestIdOf(res);
    const started = process.hrtime.bigint();
    const target = req.headers['x-amz-target'];
    const opName = typeof target === 'string' && target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : '';
    handle(opts, verifier, req, requestId, opName).then(
      (out) => {
        send(res, 200, out);
        opts.log.debug({ requestId, op: opName, ms: elapsedMs(started) }, 'request');
      },
      (e: unknown) => sendError(opts.log, res, e, requestId, opName, started),
    );
  });
  // Body-parser failures (oversized or unreadable bodies) become AWS-shaped errors too.
  router.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const requestId = requestIdOf(res);
    const status = (err as { status?: number }).status;
    const e = status === 413 ? Errors.validation('Request body is too large.') : Errors.serialization('Could not read the request body.');
    sendError(opts.log, res, e, requestId, '', process.hrtime.bigint());
  });
  return router;
}

async function handle(
  opts: AwsJsonOptions,
  verifier: SigV4Verifier,
  req: Request,
  requestId: string,
  opName: string,
): Promise<unknown> {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const credential = verifier.verify({ method: req.method, url: req.originalUrl, headers: req.headers, body }) as Credential;
  const operation = Object.hasOwn(operations, opName) ? operations[opName] : undefined;
  if (!operation) throw Errors.unknownOperation(opName ? `Unknown operation ${opName}` : 'Missing or malformed X-Amz-Target header');
  let json: unknown;
  try {
    json = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
  } catch {
    throw Errors.serialization('Malformed JSON in the request body.');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw Errors.serialization('The request body must be a JSON object.');
  }
  const input = parse(operation.schema, json);
  const ctx: RequestContext = {
    principal: credential.principal,
    requestId,
    sourceIp: req.socket.remoteAddress,
    userAgent: req.headers['user-agent'],
    input: input as Readonly<Record<string, unknown>>,
    authz: opts.deps.authz,
  };
  return toWire(await operation.handler(opts.deps, ctx, input));
}

function send(res: Response, status: number, body: unknown): void {
  const text = JSON.stringify(body ?? {});
  res.status(status).setHeader('Content-Type', CONTENT_TYPE);
  res.end(text);
}

function sendError(log: Logger, res: Response, e: unknown, requestId: string, op: string, started: bigint): void {
  const err: KmsError = isKmsError(e) ? e : Errors.internal('An internal error occurred.');
  if (!isKmsError(e)) log.error({ requestId, op, err: (e as Error)?.message, stack: (e as Error)?.stack }, 'unexpected failure');
  else if (err.isFault) log.warn({ requestId, op, error: err.code, message: err.message }, 'request failed');
  else log.debug({ requestId, op, error: err.code, ms: elapsedMs(started) }, 'request rejected');
  send(res, err.status, { __type: err.code, message: err.message });
}

/** The id the app gave this response (every response has one), or a new one if mounted alone. */
function requestIdOf(res: Response): string {
  let id = res.getHeader('x-amzn-RequestId') as string | undefined;
  if (!id) {
    id = randomUUID();
    res.setHeader('x-amzn-RequestId', id);
  }
  return id;
}

const elapsedMs = (started: bigint): number => Number(process.hrtime.bigint() - started) / 1e6;
