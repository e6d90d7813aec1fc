import type { IncomingMessage } from 'node:http';
import { awsCallEvent, type CallInfo } from '../audit/aws-event.js';
import { Errors, isKmsError, type KmsError } from '../errors.js';
import { callKeyFacts } from '../kms/call-facts.js';
import type { KmsDeps } from '../kms/context.js';
import type { Logger } from '../log.js';
import { requestDuration, requestErrors, requests } from '../metrics/metrics.js';

/**
 * What every front door that serves the core operations does around a call, whatever its wire
 * form: read a bounded body, refuse while a fail-closed trail is down, record the audit event
 * before answering, count the call. The doors differ only in decoding and encoding.
 */

/** Far above any valid KMS request (6 KiB blobs, 32 KiB policies), small enough to bound memory. */
export const MAX_BODY = 512 * 1024;
const EMPTY = Buffer.alloc(0);

/** Collects the body up to MAX_BODY bytes; beyond that it is drained and the request refused. */
export function readBody(req: IncomingMessage, done: (tooLarge: boolean, body: Buffer) => void): void {
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_BODY) {
    req.resume();
    req.once('end', () => done(true, EMPTY));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size <= MAX_BODY) chunks.push(c);
  });
  req.once('end', () => {
    if (size > MAX_BODY) done(true, EMPTY);
    else done(false, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  });
}

export const auditRefused = () =>
  Errors.internal('The audit trail cannot be written, so the request was refused without being performed. Retry later.');

/** Fail-closed: refuse before any work while the audit trail cannot be written. */
export async function refuseWhileAuditDown(deps: KmsDeps): Promise<void> {
  if (deps.audit.failClosed && !(await deps.audit.ready())) throw auditRefused();
}

export interface Settled {
  output?: object | undefined;
  error?: KmsError | undefined;
}

/**
 * Records the call's audit event, then says what to answer. A result (ciphertext, plaintext,
 * data key) may be sent only after its event was written; in fail-closed mode a failed write
 * turns the answer into a 500 and the result is wiped, never sent. Counts the call.
 */
export async function settle(
  deps: KmsDeps,
  log: Logger,
  frontDoor: string,
  call: CallInfo,
  started: bigint,
  output?: object,
  failure?: unknown,
): Promise<Settled> {
  let error: KmsError | undefined;
  if (failure !== undefined) {
    error = isKmsError(failure) ? failure : Errors.internal('An internal error occurred.');
    logFailure(log, failure, error, call, started);
  }
  try {
    const result = output as Record<string, unknown> | undefined;
    await deps.audit.record(awsCallEvent(call, result, error, callKeyFacts(deps, call, result)));
  } catch (e) {
    log.error({ requestId: call.requestId, op: call.operation, err: (e as Error).message }, 'audit event not written');
    if (deps.audit.failClosed) {
      wipe(output);
      output = undefined;
      error = auditRefused();
    }
  }
  // GetKeyLastUsage: a successful call of a tracked operation is a use of its key(s), whichever door it came through.
  if (!error) deps.keyUsage?.noteSuccess(call.operation, output as Record<string, unknown>, deps.clock.now().getTime(), call.eventId as string, call.requestId);
  const m = metricsFor(frontDoor, call.known ? call.operation : 'unknown');
  (!error ? m.success : error.isFault ? m.serverError : m.clientError).inc();
  if (error) requestErrors.inc({ front_door: frontDoor, operation: m.operation, code: error.code });
  m.duration.observe(elapsedMs(started) / 1000);
  if (!error) log.debug({ requestId: call.requestId, op: call.operation, ms: elapsedMs(started) }, 'request');
  return { output, error };
}

/** Per-door, per-operation metric children, resolved once (label hashing on every request is measurable). */
const perOperation = new Map<string, ReturnType<typeof makeMetrics>>();
function makeMetrics(frontDoor: string, operation: string) {
  const labels = { front_door: frontDoor, operation };
  return {
    operation,
    success: requests.labels({ ...labels, outcome: 'success' }),
    clientError: requests.labels({ ...labels, outcome: 'client_error' }),
    serverError: requests.labels({ ...labels, outcome: 'server_error' }),
    duration: requestDuration.labels(labels),
  };
}
function metricsFor(frontDoor: string, operation: string) {
  const id = `${frontDoor}\u0000${operation}`;
  let m = perOperation.get(id);
  if (!m) perOperation.set(id, (m = makeMetrics(frontDoor, operation)));
  return m;
}

/** Zeroes plaintexts and data keys in a result that will not be sent. */
export function wipe(output: object | undefined): void {
  for (const v of Object.values(output ?? {})) if (Buffer.isBuffer(v)) v.fill(0);
}

function logFailure(log: Logger, e: unknown, err: KmsError, call: CallInfo, started: bigint): void {
  const { requestId, operation: op } = call;
  if (!isKmsError(e)) log.error({ requestId, op, err: (e as Error)?.message, stack: (e as Error)?.stack }, 'unexpected failure');
  else if (err.isFault) log.warn({ requestId, op, error: err.code, message: err.message }, 'request failed');
  else log.debug({ requestId, op, error: err.code, ms: elapsedMs(started) }, 'request rejected');
}

const elapsedMs = (started: bigint): number => Number(process.hrtime.bigint() - started) / 1e6;
