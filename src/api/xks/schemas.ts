import { z } from 'zod';
import { XksError } from './errors.js';

/**
 * One zod schema per XKS operation: the single source of the request types and of the
 * ValidationException messages. Binary fields stay strings here; decodeBase64() turns them into
 * bytes with the size limits below (larger values are UnsupportedOperationException, as the spec
 * reserves for "a parameter value exceeded the maximum size … supported by an implementation").
 */

/** Our limits, at or above the spec's minimums (4300 bytes of plaintext/ciphertext, 8192 of AAD). */
export const MAX_PLAINTEXT_BYTES = 8192;
export const MAX_AAD_BYTES = 8192;
export const MAX_METADATA_BYTES = 20;

const ARN = z.string().min(1).max(2048);
const OPTIONAL_TEXT = z.string().max(2048).optional();

/** requestMetadata of GetKeyMetadata, Encrypt and Decrypt. Unknown members (future KMS fields) are kept for the audit trail. */
const keyRequestMetadata = (kmsKeyArn: z.ZodType<string | undefined>) =>
  z.looseObject({
    awsPrincipalArn: ARN,
    awsSourceVpc: OPTIONAL_TEXT,
    awsSourceVpce: OPTIONAL_TEXT,
    kmsKeyArn,
    kmsOperation: z.string().min(1).max(256),
    // Opaque: the spec forbids validating its structure.
    kmsRequestId: z.string().min(1).max(2048),
    kmsViaService: OPTIONAL_TEXT,
  });

const B64 = z.string();

export const GetKeyMetadataRequest = z.object({ requestMetadata: keyRequestMetadata(ARN.optional()) });

export const EncryptRequest = z.object({
  requestMetadata: keyRequestMetadata(ARN),
  plaintext: B64,
  encryptionAlgorithm: z.literal('AES_GCM'),
  additionalAuthenticatedData: B64.optional(),
  ciphertextDataIntegrityValueAlgorithm: z.literal('SHA_256').optional(),
});

export const DecryptRequest = z.object({
  requestMetadata: keyRequestMetadata(ARN),
  ciphertext: B64,
  encryptionAlgorithm: z.literal('AES_GCM'),
  initializationVector: B64,
  authenticationTag: B64,
  additionalAuthenticatedData: B64.optional(),
  ciphertextMetadata: B64.optional(),
});

export const GetHealthStatusRequest = z.object({
  requestMetadata: z.looseObject({
    kmsRequestId: z.string().min(1).max(2048),
    kmsOperation: z.string().min(1).max(256),
  }),
});

export type KeyRequestMetadata = z.output<typeof EncryptRequest>['requestMetadata'];
export type HealthRequestMetadata = z.output<typeof GetHealthStatusRequest>['requestMetadata'];
export type RequestMetadata = z.output<typeof GetKeyMetadataRequest>['requestMetadata'] | HealthRequestMetadata;

/** Validates a parsed JSON body; the first few issues become one ValidationException message. */
export function parseRequest<S extends z.ZodType>(schema: S, json: unknown): z.output<S> {
  const r = schema.safeParse(json);
  if (r.success) return r.data;
  const detail = r.error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(body)'}: ${i.code === 'invalid_type' && i.input === undefined ? 'is required' : i.message}`)
    .join('; ');
  throw new XksError('ValidationException', `Invalid request: ${detail}`);
}

/**
 * Strict standard Base64 (RFC 4648 §4, padded, no whitespace): decoding and re-encoding must give
 * the input back. Undefined stays undefined (an absent optional field).
 */
export function decodeBase64(value: string, field: string, maxBytes: number): Buffer;
export function decodeBase64(value: string | undefined, field: string, maxBytes: number): Buffer | undefined;
export function decodeBase64(value: string | undefined, field: string, maxBytes: number): Buffer | undefined {
  if (value === undefined) return undefined;
  // 4 characters per 3 bytes: anything longer than the limit's encoding is too large whatever it holds.
  if (value.length > Math.ceil(maxBytes / 3) * 4) {
    throw new XksError('UnsupportedOperationException', `${field} is larger than the supported ${maxBytes} bytes.`);
  }
  const bytes = Buffer.from(value, 'base64');
  if (value.length % 4 !== 0 || bytes.toString('base64') !== value) {
    throw new XksError('ValidationException', `${field} is not valid Base64.`);
  }
  if (bytes.length > maxBytes) {
    throw new XksError('UnsupportedOperationException', `${field} is larger than the supported ${maxBytes} bytes.`);
  }
  return bytes;
}
