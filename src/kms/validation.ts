import { z } from 'zod';
import { Errors } from '../errors.js';

/**
 * zod building blocks whose messages read like AWS's constraint messages, and parse() which
 * turns zod issues into one ValidationException (or SerializationException for wrong types).
 */

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** Marker message for a value of the wrong JSON type: reported as SerializationException. */
const WRONG_TYPE = '\u0000type';
/** Request members whose values are never echoed in an error message. */
const NEVER_ECHO = new Set([
  'Plaintext', 'CiphertextBlob', 'Policy', 'Message', 'Mac', 'Signature', 'PublicKey',
  'KeyStorePassword', 'XksProxyAuthenticationCredential',
]);

const lenMin = (n: number) => `Member must have length greater than or equal to ${n}`;
const lenMax = (n: number) => `Member must have length less than or equal to ${n}`;

export function str(min: number, max: number, pattern?: RegExp) {
  let s = z.string({ error: WRONG_TYPE }).min(min, { message: lenMin(min) }).max(max, { message: lenMax(max) });
  if (pattern) s = s.regex(pattern, { message: `Member must satisfy regular expression pattern: ${pattern.source}` });
  return s;
}

export function int(min: number, max: number) {
  return z
    .number({ error: WRONG_TYPE })
    .int({ message: WRONG_TYPE })
    .min(min, { message: `Member must have value greater than or equal to ${min}` })
    .max(max, { message: `Member must have value less than or equal to ${max}` });
}

export const bool = () => z.boolean({ error: WRONG_TYPE });

/** A timestamp on the wire (epoch seconds, as AWS JSON 1.1 sends it), a Date inside. */
export const timestamp = () =>
  z
    .number({ error: WRONG_TYPE })
    .refine((n) => Number.isFinite(n), { message: WRONG_TYPE })
    .transform((n) => new Date(Math.round(n * 1000)));

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.string({ error: WRONG_TYPE }).refine((v): v is T[number] => (values as readonly string[]).includes(v), {
    message: `Member must satisfy enum value set: [${values.join(', ')}]`,
  });
}

export function list<T extends z.ZodType>(item: T, min: number, max: number) {
  return z.array(item, { error: WRONG_TYPE }).min(min, { message: lenMin(min) }).max(max, { message: lenMax(max) });
}

/** A base64 blob on the wire, a Buffer inside; length limits apply to the decoded bytes. */
export function blob(min: number, max: number) {
  return z.string({ error: WRONG_TYPE }).transform((s, ctx) => {
    if (s.length % 4 !== 0 || !BASE64.test(s)) {
      ctx.addIssue({ code: 'custom', message: WRONG_TYPE });
      return z.NEVER;
    }
    const b = Buffer.from(s, 'base64');
    if (b.length < min) ctx.addIssue({ code: 'custom', message: lenMin(min) });
    if (b.length > max) ctx.addIssue({ code: 'custom', message: lenMax(max) });
    return b;
  });
}

export const KEY_ID = str(1, 2048);
export const GRANT_TOKENS = list(str(1, 8192), 0, 10).optional();
export const LIMIT = int(1, 1000).optional();
export const MARKER = str(1, 1024, /^[\u0020-\u00FF]*$/).optional();
export const DESCRIPTION = str(0, 8192);
export const DRY_RUN = bool().optional();
export const NUMBER_OF_BYTES = int(1, 1024);

/** Our bound on the whole encryption context: keys plus values, in UTF-8 bytes. */
export const MAX_ENCRYPTION_CONTEXT_BYTES = 8192;
export const ENCRYPTION_CONTEXT = z
  .record(z.string({ error: WRONG_TYPE }), z.string({ error: WRONG_TYPE }), { error: WRONG_TYPE })
  .superRefine((ec, ctx) => {
    let size = 0;
    for (const [k, v] of Object.entries(ec)) {
      if (k.length === 0) ctx.addIssue({ code: 'custom', message: 'Encryption context keys must not be empty' });
      size += Buffer.byteLength(k) + Buffer.byteLength(v);
    }
    if (size > MAX_ENCRYPTION_CONTEXT_BYTES) {
      ctx.addIssue({ code: 'custom', message: `Encryption context must be ${MAX_ENCRYPTION_CONTEXT_BYTES} bytes or less` });
    }
  })
  .optional();

/**
 * RecipientInfo (Nitro Enclaves attestation): decoded with the model's constraints, so an
 * invalid algorithm is a ValidationException; a valid one is then refused (request-flags.ts).
 */
export const RECIPIENT = z
  .object(
    { KeyEncryptionAlgorithm: oneOf(['RSAES_OAEP_SHA_256']).optional(), AttestationDocument: blob(1, 262144).optional() },
    { error: WRONG_TYPE },
  )
  .optional();

export const TAG = z.object(
  { TagKey: str(1, 128), TagValue: str(0, 256) },
  { error: WRONG_TYPE },
);

/** AWS spells member paths in lower camel case, with list items as `member.N` (1-based). */
function awsPath(path: PropertyKey[]): string {
  return path
    .map((p) => (typeof p === 'number' ? `${p + 1}.member` : String(p).charAt(0).toLowerCase() + String(p).slice(1)))
    .join('.');
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let v: unknown = input;
  for (const p of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

function describeValue(path: PropertyKey[], value: unknown): string {
  if (value === undefined || value === null) return 'Value null';
  if (NEVER_ECHO.has(String(path[0]))) return 'Value';
  if (typeof value === 'string' && value.length <= 256) return `Value '${value}'`;
  if (typeof value === 'number') return `Value '${value}'`;
  return 'Value';
}

/** What AWS's JSON deserializer calls each JSON type it found, and each member type it expected. */
const FOUND: Record<string, string> = { string: 'STRING_VALUE', number: 'NUMBER_VALUE', boolean: 'BOOLEAN_VALUE' };
const EXPECTED: Record<string, string> = {
  // Every numeric input member of the model is an integer but ImportKeyMaterial's ValidTo.
  string: 'a String', number: 'an Integer', int: 'an Integer', boolean: 'a Boolean', object: 'a Structure', record: 'a Map',
  array: 'a List',
};

/**
 * AWS's SerializationException messages for a member of the wrong JSON type (its deserializer's
 * wording, e.g. "STRING_VALUE can not be converted to an Integer"); a string that is not base64
 * where a blob is expected gets the blob wording. Never zod's own words.
 */
function wrongTypeMessage(issue: z.core.$ZodIssue, value: unknown): string {
  if (Array.isArray(value)) return 'Start of list found where not expected';
  if (typeof value === 'object') return 'Start of structure or map found where not expected.';
  const expected = issue.code === 'invalid_type' ? EXPECTED[issue.expected] : undefined;
  if (!expected) return `Unexpected value type or encoding for '${awsPath(issue.path)}'.`;
  return `${FOUND[typeof value] ?? 'VALUE'} can not be converted to ${expected}`;
}

export function parse<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  // A present value of the wrong JSON type (any zod invalid_type, our own or a nested object's).
  const wrongType = result.error.issues.find((i) => {
    const value = valueAt(input, i.path);
    return (i.message === WRONG_TYPE || i.code === 'invalid_type') && value !== undefined && value !== null;
  });
  if (wrongType) throw Errors.serialization(wrongTypeMessage(wrongType, valueAt(input, wrongType.path)));
  const messages = result.error.issues.map((i) => {
    const value = valueAt(input, i.path);
    const missing = value === undefined || value === null;
    const constraint = missing && (i.message === WRONG_TYPE || i.code === 'invalid_type') ? 'Member must not be null' : i.message;
    return `${describeValue(i.path, value)} at '${awsPath(i.path)}' failed to satisfy constraint: ${constraint}`;
  });
  const n = messages.length;
  throw Errors.validation(`${n} validation error${n === 1 ? '' : 's'} detected: ${messages.join('; ')}`);
}
