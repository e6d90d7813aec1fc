import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CallInfo } from '../../audit/aws-event.js';
import { Errors, KmsError } from '../../errors.js';
import type { KmsDeps, Principal, RequestContext } from '../../kms/context.js';
import { parse } from '../../kms/validation.js';
import type { Logger } from '../../log.js';
import { isSecureTransport } from '../../net/listener.js';
import type { RawHandler } from '../aws-json/router.js';
import { readBody, refuseWhileAuditDown, settle } from '../call.js';
import { toRest } from './names.js';
import { openApiDocument } from './openapi.js';
import { PROBLEM_TYPE, problem } from './problem.js';
import { keyRef, match, type CompiledRoute } from './routes.js';

/**
 * The REST front door (README "REST API"): `/v1/...` routes onto the core operations. It only
 * decodes, authenticates (through the listener's RestAuth), calls the core, audits and encodes.
 */

/** How the listener establishes the caller: a sidecar socket speaks for its configured principal; TCP needs SigV4. */
export interface RestAuth {
  /** Returns the caller or throws a KmsError (401 on the wire). */
  authenticate(req: IncomingMessage, body: Buffer): Principal;
  /** The sidecar socket path, recorded in audit events. */
  socket?: string | undefined;
}

export interface RestOptions {
  deps: KmsDeps;
  log: Logger;
}

const JSON_TYPE = 'application/json';
const OCTET_TYPE = 'application/octet-stream';
/** Query members that are numbers and lists on the wire (everything else in a query string is a string). */
const NUMERIC = new Set(['Limit']);
const REPEATED = new Set(['GrantTokens']);
/** In raw-bytes mode the encryption context comes as query parameters `context.<name>=<value>`. */
const CONTEXT_PARAM = 'context.';

type Mode = 'json' | 'octet';

export function restHandler(opts: RestOptions, auth: RestAuth): RawHandler {
  let openapi: string | undefined;
  return (req, res, next) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (!path.startsWith('/v1/') && path !== '/v1') return next();
    const requestId = randomUUID();
    const method = req.method ?? 'GET';
    if (path === '/v1/openapi.json' && (method === 'GET' || method === 'HEAD')) {
      // The document describes the routes, nothing about any key: it is served without authentication.
      openapi ??= JSON.stringify(openApiDocument());
      req.resume();
      sendBody(res, requestId, 200, JSON_TYPE, Buffer.from(openapi));
      return;
    }
    const { found, allowed } = match(method, path);
    if (!found) {
      req.resume();
      const err = allowed.length
        ? new KmsError('UnknownOperationException', `${method} is not served at ${path}; use ${allowed.join(' or ')}.`, 405)
        : new KmsError('UnknownOperationException', `No such resource: ${path}. See GET /v1/openapi.json.`, 404);
      if (allowed.length) res.setHeader('Allow', allowed.join(', '));
      sendProblem(res, requestId, err);
      return;
    }
    const started = process.hrtime.bigint();
    const call: CallInfo = {
      operation: found.route.operation,
      known: true,
      requestId,
      eventId: randomUUID(),
      sourceIp: req.socket.remoteAddress,
      userAgent: req.headers['user-agent'],
      authorization: req.headers.authorization,
      frontDoor: { name: 'rest', socket: auth.socket },
    };
    const mode = modeOf(req, found.route);
    readBody(req, (tooLarge, body) => {
      const run = tooLarge
        ? Promise.reject(new KmsError('ValidationException', 'Request body is too large.', 413))
        : handle(opts, auth, req, body, call, found.route, found.key, q < 0 ? '' : url.slice(q + 1), mode);
      run.then(
        (out) => answer(opts, res, call, started, found.route, mode, out),
        (e: unknown) => answer(opts, res, call, started, found.route, mode, undefined, e),
      );
    });
  };
}

function modeOf(req: IncomingMessage, route: CompiledRoute): Mode | undefined {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === '' || type === JSON_TYPE || type.endsWith('+json')) return 'json';
  if (type === OCTET_TYPE && route.octet) return 'octet';
  return undefined;
}

async function handle(
  opts: RestOptions,
  auth: RestAuth,
  req: IncomingMessage,
  body: Buffer,
  call: CallInfo,
  route: CompiledRoute,
  key: string | undefined,
  query: string,
  mode: Mode | undefined,
): Promise<object> {
  await refuseWhileAuditDown(opts.deps);
  const principal = auth.authenticate(req, body);
  call.principal = principal;
  if (!mode) {
    const accepted = route.octet ? `${JSON_TYPE} or ${OCTET_TYPE}` : JSON_TYPE;
    throw new KmsError('SerializationException', `Unsupported Content-Type; this route accepts ${accepted}.`, 415);
  }
  const members = route.fromQuery ? fromQuery(route, query, body) : mode === 'octet' ? fromOctets(route, query, body) : fromJson(route, query, body);
  if (route.keyMember && key !== undefined) members[route.keyMember] = keyRef(key);
  const input = parse(route.core.schema, members);
  const ctx: RequestContext = {
    principal,
    requestId: call.requestId,
    sourceIp: call.sourceIp,
    userAgent: call.userAgent,
    input: input as Readonly<Record<string, unknown>>,
    authz: opts.deps.authz,
    secureTransport: isSecureTransport(req.socket),
  };
  call.input = input as Record<string, unknown>;
  return route.core.handler(opts.deps, ctx, input);
}

const unknownMember = (route: CompiledRoute, name: string) =>
  Errors.serialization(`Unknown member '${name}'; this route accepts: ${[...route.members.keys()].join(', ') || 'none'}.`);

function noQuery(query: string): void {
  if (query !== '') throw Errors.serialization('This route takes its members in the JSON body, not in the query string.');
}

/** A JSON body with camel-case members, renamed to the core's member names. */
function fromJson(route: CompiledRoute, query: string, body: Buffer): Record<string, unknown> {
  noQuery(query);
  let json: unknown;
  try {
    json = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
  } catch {
    throw Errors.serialization('Malformed JSON in the request body.');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw Errors.serialization('The request body must be a JSON object.');
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(json)) {
    const member = route.members.get(name);
    if (!member) throw unknownMember(route, name);
    out[member] = value;
  }
  return out;
}

/** Raw bytes: the body is the plaintext or ciphertext; `context.<name>=<value>` query parameters are the encryption context. */
function fromOctets(route: CompiledRoute, query: string, body: Buffer): Record<string, unknown> {
  const out: Record<string, unknown> = { [route.octet!.request]: body.toString('base64') };
  const context: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(query)) {
    if (!name.startsWith(CONTEXT_PARAM)) {
      throw Errors.serialization(`Unknown query parameter '${name}'; with ${OCTET_TYPE} only context.<name>=<value> is accepted.`);
    }
    context[name.slice(CONTEXT_PARAM.length)] = value;
  }
  if (Object.keys(context).length) out.EncryptionContext = context;
  return out;
}

function fromQuery(route: CompiledRoute, query: string, body: Buffer): Record<string, unknown> {
  if (body.length) throw Errors.serialization(`${route.method} ${route.path} takes no body; its members are query parameters.`);
  const params = new URLSearchParams(query);
  const out: Record<string, unknown> = {};
  for (const name of new Set(params.keys())) {
    const member = route.members.get(name);
    if (!member) throw unknownMember(route, name);
    const value = params.get(name)!;
    out[member] = REPEATED.has(member) ? params.getAll(name) : NUMERIC.has(member) && /^\d+$/.test(value) ? Number(value) : value;
  }
  return out;
}

async function answer(
  opts: RestOptions,
  res: ServerResponse,
  call: CallInfo,
  started: bigint,
  route: CompiledRoute,
  mode: Mode | undefined,
  output?: object,
  failure?: unknown,
): Promise<void> {
  const settled = await settle(opts.deps, opts.log, 'rest', call, started, output, failure);
  if (settled.error) return sendProblem(res, call.requestId, settled.error);
  const result = settled.output as Record<string, unknown>;
  if (mode === 'octet' && route.octet) {
    const bytes = result[route.octet.response] as Buffer;
    res.setHeader('Kms-Key-Id', String(result.KeyId));
    sendBody(res, call.requestId, 200, OCTET_TYPE, bytes);
    return;
  }
  sendBody(res, call.requestId, 200, JSON_TYPE, Buffer.from(JSON.stringify(toRest(result) ?? {})));
}

export function sendProblem(res: ServerResponse, requestId: string, err: KmsError): void {
  const p = problem(err, requestId);
  sendBody(res, requestId, p.status, PROBLEM_TYPE, Buffer.from(JSON.stringify(p)));
}

function sendBody(res: ServerResponse, requestId: string, status: number, type: string, body: Buffer): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': body.length, 'x-amzn-RequestId': requestId });
  res.end(body);
}

