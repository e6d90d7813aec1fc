
function logFailure(log: Logger, e: unknown, err: KmsError, call: CallInfo, started: bigint): void {
  const { requestId, operation: op } = call;
  if (!isKmsError(e)) log.error({ requestId, op, err: (e as Error)?.message, stack: (e as Error)?.stack }, 'unexpected failure');
  else if (err.isFault) log.warn({ requestId, op, error: err.code, message: err.message }, 'request failed');
  else log.debug({ requestId, op, error: err.code, ms: elapsedMs(started) }, 'request rejected');
}

const elapsedMs = (started: bigint): number => Number(process.hrtime.bigint() - started) / 1e6;
