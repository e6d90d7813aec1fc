import type { KmsError } from '../../errors.js';

/**
 * REST statuses for the core's typed errors (README "REST API", error table). The AWS JSON
 * door answers almost every client error with 400, as AWS does; a REST client switches on the
 * status, so here each class of error has its own. Errors not listed keep the core's status.
 */
export const REST_STATUS: Readonly<Record<string, number>> = {
  // The request could not be read: malformed JSON, a value of the wrong type, an unknown member.
  SerializationException: 400,
  // Authentication (only on TCP, where the REST routes need SigV4).
  MissingAuthenticationTokenException: 401,
  IncompleteSignatureException: 401,
  InvalidSignatureException: 401,
  UnrecognizedClientException: 401,
  AccessDeniedException: 403,
  NotFoundException: 404,
  CustomKeyStoreNotFoundException: 404,
  UnknownOperationException: 404,
  // The key's state forbids the operation now.
  DisabledException: 409,
  KMSInvalidStateException: 409,
  CustomKeyStoreInvalidStateException: 409,
  ConflictException: 409,
  AlreadyExistsException: 409,
  LimitExceededException: 409,
  // DryRun: the call would have succeeded (AWS sends 412 for it as well).
  DryRunOperationException: 412,
  // Well-formed, but not valid for this key, ciphertext or value.
  ValidationException: 422,
  InvalidCiphertextException: 422,
  IncorrectKeyException: 422,
  InvalidKeyUsageException: 422,
  InvalidGrantTokenException: 422,
  InvalidMarkerException: 422,
  InvalidArnException: 422,
  KMSInvalidSignatureException: 422,
  KMSInvalidMacException: 422,
  UnsupportedOperationException: 422,
  ThrottlingException: 429,
  KMSInternalException: 500,
  // The token (or a custom key store's token) is away or reconnecting: retry.
  KeyUnavailableException: 503,
  DependencyTimeoutException: 503,
};

/** The core's errors carry AWS's 400 or 500; a status the REST door chose itself (404, 405, 413, 415) stands. */
export function restStatus(err: KmsError): number {
  if (err.status !== 400 && err.status !== 500) return err.status;
  return REST_STATUS[err.code] ?? err.status;
}

export const PROBLEM_TYPE = 'application/problem+json';

/** RFC 9457 problem details: the AWS error name as type (a URN), title and `code`; its message as detail. */
export function problem(err: KmsError, requestId: string) {
  const status = restStatus(err);
  return { type: `urn:p11kms:problem:${err.code}`, title: err.code, status, detail: err.message, code: err.code, requestId };
}
