import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { xksCallEvent } from '../../audit/xks-event.js';
import type { Clock } from '../../clock.js';
import { isKmsError } from '../../errors.js';
import type { KmsDeps } from '../../kms/context.js';
import {
  XksHealthCheck, XksKeyResolver, xksDecrypt, xksEncrypt, xksKeyMetadata, type XksDaemonKey, type XksKeyBinding,
} from '../../kms/xks.js';
import type { Logger } from '../../log.js';
import { isSecureTransport, startListener, type Listener } from '../../net/listener.js';
import { requestDuration, requestErrors, requests } from '../../metrics/metrics.js';
import { secondaryAuthorize, XksAuthenticator, type XksKeyOperation } from './auth.js';
import type { XksConfig } from './config.js';
import { errorBody, toXksError, XksError, type XksErrorName } from './errors.js';
import {
  decodeBase64, DecryptRequest, EncryptRequest, GetHealthStatusRequest, GetKeyMetadataRequest, MAX_AAD_BYTES,
  MAX_METADATA_BYTES, MAX_PLAINTEXT_BYTES, parseRequest, type RequestMetadata,
} from './schemas.js';

/**
 * The XKS proxy front door (AWS KMS External Key Store Proxy API v1) on its own listener:
 *
 *   POST {prefix}/kms/xks/v1/keys/{externalKeyId}/metadata | encrypt | decrypt
 *   POST {prefix}/kms/xks/v1/health
 *
 * Route (unknown path: InvalidUriPathException) → method (not POST: 405) → SigV4 with the
 * prefix's credentials → JSON and schema → key → optional secondary authorization → the core
 * (src/kms/xks.ts) → JSON. Plain node:http(s) rather than express: four fixed routes, and the
 * per-request overhead matters for the 1,800 requests/s KMS allows an external key store.
 */

export type XksOperation = XksKeyOperation | 'GetHealthStatus';

/** One record per request that reached a route or was refused; never holds plaintext or key material. */
export interface XksAuditEvent {
  time: Date;
  requestId: string;
  operation?: XksOperation | undefined;
  uriPrefix?: string | undefined;
  externalKeyId?: string | undefined;
  /** The daemon key the external key id resolved to (its id, ARN and account: the audit event names it). */
  keyId?: string | undefined;
  keyArn?: string | undefined;
  keyAccountId?: string | undefined;
  /** The XKS SigV4 access key id that authenticated the request. */
  accessKeyId?: string | undefined;
  sourceIp?: string | undefined;
  /** As validated (unknown members that KMS may add later are kept). */
  requestMetadata?: RequestMetadata | undefined;
  status: number;
  errorName?: XksErrorName | undefined;
  errorMessage?: string | undefined;
  durationMs: number;
}

export interface XksFrontDoorOptions {
  deps: KmsDeps;
  config: XksConfig;
  /** The account whose keys (and aliases) the external key ids name. */
  accountId: string;
  clock: Clock;
  log: Logger;
  /**
   * Extra audit hook (called after each response is sent); a no-op by default. Must not throw or
   * block. Every request is also recorded in deps.audit (the audit trail) before it is answered.
   */
  onAudit?: ((event: XksAuditEvent) => void) | undefined;
}

/** The listener: 'https' or, in development mode, 'http'; reloadTls() re-reads the certificate files. */
export type XksServer = Listener;

const MARK = '/kms/xks/v1/';
const MAX_BODY_BYTES = 64 * 1024;
const JSON_TYPE = 'application/json';
const VENDOR = 'p11kms';
const MODEL = 'p11kms XKS proxy 0.1.0';

interface PrefixState {
  prefix: string;
  auth: XksAuthenticator;
  keys: Map<string, XksKeyBinding>;
}

interface Route {
  state: PrefixState;
  operation: XksOperation;
  externalKeyId?: string | undefined;
}

const auditRefused = () =>
  new XksError('InternalException', 'The audit trail cannot be written, so the request was refused without being performed. Retry later.');

/** Request metrics (front_door 'xks'), as for the AWS API: operation 'unknown' for unrouted paths. */
function countRequest(event: XksAuditEvent): void {
  const labels = { front_door: 'xks', operation: event.operation ?? 'unknown' };
  const outcome = event.status < 400 ? 'success' : event.status >= 500 ? 'server_error' : 'client_error';
  requests.inc({ ...labels, outcome });
  if (event.status >= 400) requestErrors.inc({ ...labels, code: event.errorName ?? `HTTP${event.status}` });
  requestDuration.observe(labels, event.durationMs / 1000);
}

/** The request handler alone (the listener is startXksServer's job). */
export function xksRequestHandler(opts: XksFrontDoorOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const prefixes = new Map<string, PrefixState>();
  for (const p of opts.config.uriPrefixes) {
    prefixes.set(p.prefix, {
      prefix: p.prefix,
      auth: new XksAuthenticator(p.credentials, opts.config.regions, opts.clock),
      keys: new Map(p.keys.map((k) => [k.externalKeyId, k])),
    });
  }
  const resolver = new XksKeyResolver(opts.deps, opts.accountId);
  const health = new XksHealthCheck(opts.deps, resolver, opts.config.healthKey, opts.config.healthCacheMs);
  const onAudit = opts.onAudit;
  const audit = opts.deps.audit;
  const log = opts.log;

  function route(path: string): Route | undefined {
    const at = path.lastIndexOf(MARK);
    if (at < 0) return undefined;
    const state = prefixes.get(path.slice(0, at));
    if (!state) return undefined;
    const tail = path.slice(at + MARK.length);
    if (tail === 'health') return { state, operation: 'GetHealthStatus' };
    const parts = tail.split('/');
    if (parts.length !== 3 || parts[0] !== 'keys' || !parts[1]) return undefined;
    const operation = parts[2] === 'metadata' ? 'GetKeyMetadata' : parts[2] === 'encrypt' ? 'Encrypt' : parts[2] === 'decrypt' ? 'Decrypt' : undefined;
    return operation && { state, operation, externalKeyId: parts[1] };
  }

  return (req, res) => {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const r = route(q < 0 ? url : url.slice(0, q));
    const event: XksAuditEvent = {
      time: opts.clock.now(),
      requestId,
      operation: r?.operation,
      uriPrefix: r?.state.prefix,
      externalKeyId: r?.externalKeyId,
      sourceIp: req.socket.remoteAddress,
      status: 0,
      durationMs: 0,
    };
    const send = (status: number, body: string) => {
      const headers: Record<string, string | number> = {
        'Content-Type': JSON_TYPE,
        'Content-Length': Buffer.byteLength(body),
        'x-amzn-RequestId': requestId,
      };
      if (status === 405) headers.Allow = 'POST';
      res.writeHead(status, headers);
      res.end(body);
      if (onAudit) {
        try {
          onAudit(event);
        } catch (e) {
          log.warn({ requestId, err: (e as Error)?.message }, 'XKS audit hook failed');
        }
      }
    };
    /**
     * Records the call in the audit trail, then answers: a result (ciphertext, plaintext) leaves
     * only after its event was written; in fail-closed mode a failed write turns the answer into
     * InternalException. Request metrics are counted with the status actually sent.
     */
    const finish = (status: number, body: string, err?: XksError) => {
      event.status = status;
      event.durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      if (err) {
        event.errorName = err.errorName;
        event.errorMessage = err.message;
        if (status >= 500) log.warn({ requestId, op: event.operation, error: err.errorName, message: err.message }, 'XKS request failed');
        else log.debug({ requestId, op: event.operation, error: err.errorName, ms: event.durationMs }, 'XKS request rejected');
      } else {
        log.debug({ requestId, op: event.operation, ms: event.durationMs }, 'XKS request');
      }
      audit.record(xksCallEvent(event)).then(
        () => undefined,
        (e: unknown) => {
          log.error({ requestId, op: event.operation, err: (e as Error)?.message }, 'XKS audit event not written');
          if (audit.failClosed) {
            const refused = auditRefused();
            event.status = refused.status;
            event.errorName = refused.errorName;
            event.errorMessage = refused.message;
            body = errorBody(refused);
          }
        },
      ).finally(() => {
        countRequest(event);
        send(event.status, body);
      }).catch((e: unknown) => log.warn({ requestId, err: (e as Error)?.message }, 'XKS response not sent'));
    };
    const fail = (e: unknown) => {
      const err = toXksError(e);
      if (!(e instanceof XksError) && !isKmsError(e)) {
        log.error({ requestId, err: (e as Error)?.message, stack: (e as Error)?.stack }, 'unexpected XKS failure');
      }
      finish(err.status, errorBody(err), err);
    };

    if (!r) return fail(new XksError('InvalidUriPathException', 'The request URI path is not valid.'));
    if (req.method !== 'POST') {
      // The spec's answer to GET on these URIs; its error table names no errorName for it.
      return finish(405, errorBody(new XksError('ValidationException', `Method ${req.method} is not allowed; use POST.`)));
    }
    const declared = Number(req.headers['content-length']);
    if (declared > MAX_BODY_BYTES) {
      res.setHeader('Connection', 'close');
      return fail(new XksError('UnsupportedOperationException', `The request body is larger than ${MAX_BODY_BYTES} bytes.`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (tooLarge) {
        return fail(new XksError('UnsupportedOperationException', `The request body is larger than ${MAX_BODY_BYTES} bytes.`));
      }
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      // Fail-closed: refuse before any work while the audit trail cannot be written.
      const ready = audit.failClosed ? audit.ready() : Promise.resolve(true);
      ready
        .then((ok) => {
          if (!ok) throw auditRefused();
          return handle(r, req, body, requestId, event);
        })
        .then((out) => finish(200, JSON.stringify(out)), fail);
    });
  };

  async function handle(r: Route, req: IncomingMessage, body: Buffer, requestId: string, event: XksAuditEvent): Promise<object> {
    const accessKeyId = r.state.auth.authenticate({ method: 'POST', url: req.url ?? '/', headers: req.headers, body });
    event.accessKeyId = accessKeyId;
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw new XksError('ValidationException', 'The request body is not valid JSON.');
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      throw new XksError('ValidationException', 'The request body must be a JSON object.');
    }

    if (r.operation === 'GetHealthStatus') {
      event.requestMetadata = parseRequest(GetHealthStatusRequest, json).requestMetadata;
      // Exempt from secondary authorization (spec).
      return healthStatus();
    }

    const binding = (): { binding: XksKeyBinding; key: XksDaemonKey } => {
      const b = r.state.keys.get(r.externalKeyId as string);
      if (!b) throw new XksError('KeyNotFoundException', `The external key ${(r.externalKeyId as string).slice(0, 128)} is not found.`);
      const key = resolver.resolve(b);
      event.keyId = key.keyId;
      event.keyArn = key.arn;
      event.keyAccountId = key.accountId;
      return { binding: b, key };
    };
    const authorizeKey = (op: XksKeyOperation, meta: RequestMetadata & { awsPrincipalArn: string }, key: XksDaemonKey) => {
      if (opts.config.secondaryAuthorization) {
        secondaryAuthorize(op, meta, key, {
          accessKeyId, requestId, sourceIp: req.socket.remoteAddress, authz: opts.deps.authz, secureTransport: isSecureTransport(req.socket),
        });
      }
    };

    switch (r.operation) {
      case 'GetKeyMetadata': {
        const input = parseRequest(GetKeyMetadataRequest, json);
        event.requestMetadata = input.requestMetadata;
        const { binding: b, key } = binding();
        authorizeKey('GetKeyMetadata', input.requestMetadata, key);
        return xksKeyMetadata(key, b);
      }
      case 'Encrypt': {
        const input = parseRequest(EncryptRequest, json);
        event.requestMetadata = input.requestMetadata;
        const plaintext = decodeBase64(input.plaintext, 'plaintext', MAX_PLAINTEXT_BYTES);
        if (plaintext.length === 0) throw new XksError('ValidationException', 'plaintext must not be empty.');
        const aad = decodeBase64(input.additionalAuthenticatedData, 'additionalAuthenticatedData', MAX_AAD_BYTES);
        const { binding: b, key } = binding();
        authorizeKey('Encrypt', input.requestMetadata, key);
        const cdiv = input.ciphertextDataIntegrityValueAlgorithm !== undefined;
        try {
          const sealed = await xksEncrypt(opts.deps, key, b, plaintext, aad, cdiv);
          return {
            ciphertext: sealed.ciphertext.toString('base64'),
            ciphertextMetadata: sealed.ciphertextMetadata.toString('base64'),
            initializationVector: sealed.initializationVector.toString('base64'),
            authenticationTag: sealed.authenticationTag.toString('base64'),
            ciphertextDataIntegrityValue: sealed.ciphertextDataIntegrityValue?.toString('base64'),
          };
        } finally {
          plaintext.fill(0);
        }
      }
      case 'Decrypt': {
        const input = parseRequest(DecryptRequest, json);
        event.requestMetadata = input.requestMetadata;
        const decoded = {
          ciphertext: decodeBase64(input.ciphertext, 'ciphertext', MAX_PLAINTEXT_BYTES),
          initializationVector: decodeBase64(input.initializationVector, 'initializationVector', 16),
          authenticationTag: decodeBase64(input.authenticationTag, 'authenticationTag', 16),
          additionalAuthenticatedData: decodeBase64(input.additionalAuthenticatedData, 'additionalAuthenticatedData', MAX_AAD_BYTES),
          ciphertextMetadata: decodeBase64(input.ciphertextMetadata, 'ciphertextMetadata', 255),
        };
        if (decoded.ciphertextMetadata && decoded.ciphertextMetadata.length > MAX_METADATA_BYTES) {
          throw new XksError('ValidationException', `ciphertextMetadata must not exceed ${MAX_METADATA_BYTES} bytes.`);
        }
        const { binding: b, key } = binding();
        authorizeKey('Decrypt', input.requestMetadata, key);
        const plaintext = await xksDecrypt(opts.deps, key, b, decoded);
        const out = { plaintext: plaintext.toString('base64') };
        plaintext.fill(0);
        return out;
      }
    }
  }

  async function healthStatus(): Promise<object> {
    const result = await health.check();
    if (!result.ok) {
      const code = result.error?.code;
      // Only these names apply to GetHealthStatus; a missing or wrong health key is the proxy's fault.
      const name: XksErrorName =
        code === 'DependencyTimeoutException' ? 'DependencyTimeoutException'
          : code === 'DisabledException' || code === 'KMSInvalidStateException' ? 'InvalidStateException'
            : code === 'ThrottlingException' ? 'ThrottlingException'
              : 'InternalException';
      throw new XksError(name, `The health check failed: ${result.error?.message ?? 'unknown error'}`);
    }
    return {
      xksProxyFleetSize: 1,
      xksProxyVendor: VENDOR,
      xksProxyModel: MODEL,
      ekmVendor: 'PKCS#11',
      ekmFleetDetails: [
        {
          id: opts.deps.token.label,
          model: `PKCS#11 token '${opts.deps.token.label}'${health.deep ? '' : ' (shallow check: no health key configured)'}`,
          healthStatus: 'ACTIVE',
        },
      ],
    };
  }
}

/**
 * Starts the listener (src/net/listener.ts): HTTPS (TLS 1.2+, optional mutual TLS with a client
 * CA and subject names, certificate reload), or plain HTTP in development mode (loopback only;
 * configuration refuses anything else).
 */
export async function startXksServer(opts: XksFrontDoorOptions): Promise<XksServer> {
  const { config } = opts;
  if (!config.tls) opts.log.warn({ host: config.host }, 'XKS proxy in development mode: plain HTTP, loopback only');
  const listener = await startListener({
    name: 'XKS proxy',
    address: { host: config.host, port: config.port },
    tls: config.tls,
    handler: xksRequestHandler(opts),
    log: opts.log,
    keepAliveTimeoutMs: 65_000,
  });
  opts.log.info(
    { host: config.host, port: listener.port, scheme: listener.scheme, prefixes: config.uriPrefixes.map((p) => p.prefix || '/'), mtls: !!config.tls?.clientCa },
    'XKS proxy listening',
  );
  return listener;
}
