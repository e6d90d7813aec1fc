/**
 * Typed KMS errors. Each carries its AWS error name and HTTP status; front doors map them to
 * their own wire form. Messages must never contain key material, plaintext, PINs or secrets.
 */
export class KmsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = code;
  }
  get isFault(): boolean {
    return this.status >= 500;
  }
}

const make =
  (code: string, status = 400) =>
  (message: string) =>
    new KmsError(code, message, status);

export const Errors = {
  // Client errors (400), as the AWS KMS JSON protocol returns them.
  validation: make('ValidationException'),
  serialization: make('SerializationException'),
  unknownOperation: make('UnknownOperationException'),
  notFound: make('NotFoundException'),
  invalidArn: make('InvalidArnException'),
  alreadyExists: make('AlreadyExistsException'),
  invalidAliasName: make('InvalidAliasNameException'),
  disabled: make('DisabledException'),
  invalidState: make('KMSInvalidStateException'),
  invalidCiphertext: make('InvalidCiphertextException'),
  incorrectKey: make('IncorrectKeyException'),
  invalidKeyUsage: make('InvalidKeyUsageException'),
  kmsInvalidSignature: make('KMSInvalidSignatureException'),
  kmsInvalidMac: make('KMSInvalidMacException'),
  invalidMarker: make('InvalidMarkerException'),
  invalidGrantToken: make('InvalidGrantTokenException'),
  limitExceeded: make('LimitExceededException'),
  tag: make('TagException'),
  unsupported: make('UnsupportedOperationException'),
  malformedPolicy: make('MalformedPolicyDocumentException'),
  accessDenied: make('AccessDeniedException'),
  dryRun: make('DryRunOperationException'),
  throttling: make('ThrottlingException'),
  // Key lifecycle: rotation, import (issue #4)
  conflict: make('ConflictException'),
  incorrectKeyMaterial: make('IncorrectKeyMaterialException'),
  expiredImportToken: make('ExpiredImportTokenException'),
  invalidImportToken: make('InvalidImportTokenException'),
  // Custom key stores (issue #6)
  customKeyStoreNotFound: make('CustomKeyStoreNotFoundException'),
  customKeyStoreInvalidState: make('CustomKeyStoreInvalidStateException'),
  customKeyStoreNameInUse: make('CustomKeyStoreNameInUseException'),
  customKeyStoreHasCMKs: make('CustomKeyStoreHasCMKsException'),
  cloudHsmClusterNotFound: make('CloudHsmClusterNotFoundException'),
  cloudHsmClusterInUse: make('CloudHsmClusterInUseException'),
  cloudHsmClusterNotRelated: make('CloudHsmClusterNotRelatedException'),
  incorrectTrustAnchor: make('IncorrectTrustAnchorException'),
  // Authentication (SigV4)
  unrecognizedClient: make('UnrecognizedClientException'),
  invalidSignature: make('InvalidSignatureException'),
  missingAuthToken: make('MissingAuthenticationTokenException'),
  incompleteSignature: make('IncompleteSignatureException'),
  // Faults: the daemon or the token failed.
  internal: make('KMSInternalException', 500),
  keyUnavailable: make('KeyUnavailableException', 500),
  dependencyTimeout: make('DependencyTimeoutException', 503),
} as const;

export function isKmsError(e: unknown): e is KmsError {
  return e instanceof KmsError;
}
