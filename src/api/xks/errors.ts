import { isKmsError } from '../../errors.js';

/**
 * XKS proxy API errors: `{"errorName", "errorMessage"}` with the HTTP status from the spec's
 * error table. The daemon's typed errors (src/errors.ts) are mapped here, once.
 */
export const XKS_ERROR_STATUS = {
  ValidationException: 400,
  InvalidStateException: 400,
  InvalidCiphertextException: 400,
  InvalidKeyUsageException: 400,
  AuthenticationFailedException: 401,
  AccessDeniedException: 403,
  KeyNotFoundException: 404,
  InvalidUriPathException: 404,
  ThrottlingException: 429,
  InternalException: 500,
  UnsupportedOperationException: 501,
  DependencyTimeoutException: 503,
} as const;

export type XksErrorName = keyof typeof XKS_ERROR_STATUS;

export class XksError extends Error {
  readonly status: number;
  constructor(
    readonly errorName: XksErrorName,
    message: string,
  ) {
    super(message);
    this.status = XKS_ERROR_STATUS[errorName];
  }
}

/** The daemon's error codes and the XKS errorName each becomes. */
const FROM_KMS: Readonly<Record<string, XksErrorName>> = {
  ValidationException: 'ValidationException',
  SerializationException: 'ValidationException',
  DisabledException: 'InvalidStateException',
  KMSInvalidStateException: 'InvalidStateException',
  InvalidCiphertextException: 'InvalidCiphertextException',
  IncorrectKeyException: 'InvalidCiphertextException',
  InvalidKeyUsageException: 'InvalidKeyUsageException',
  AccessDeniedException: 'AccessDeniedException',
  NotFoundException: 'KeyNotFoundException',
  ThrottlingException: 'ThrottlingException',
  UnsupportedOperationException: 'UnsupportedOperationException',
  DependencyTimeoutException: 'DependencyTimeoutException',
  // SigV4 failures from the shared verifier.
  UnrecognizedClientException: 'AuthenticationFailedException',
  InvalidSignatureException: 'AuthenticationFailedException',
  MissingAuthenticationTokenException: 'AuthenticationFailedException',
  IncompleteSignatureException: 'AuthenticationFailedException',
};

/** Any thrown value as an XksError; unknown failures become InternalException without detail. */
export function toXksError(e: unknown): XksError {
  if (e instanceof XksError) return e;
  if (isKmsError(e)) return new XksError(FROM_KMS[e.code] ?? 'InternalException', e.message);
  return new XksError('InternalException', 'An internal error occurred.');
}

/** The spec: errorMessage under 512 characters of printable ASCII. */
export function errorBody(err: XksError): string {
  // eslint-disable-next-line no-control-regex
  const message = err.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 511);
  return JSON.stringify({ errorName: err.errorName, errorMessage: message });
}
