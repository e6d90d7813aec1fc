/**
 * What may appear in an audit event. CloudTrail records KMS parameters in lower camel case and
 * never records plaintexts, ciphertexts or data keys; we go further and drop, at any depth:
 * - every binary value (after decoding, every AWS blob is a Buffer: Plaintext, CiphertextBlob,
 *   Message, Signature, EncryptedKeyMaterial, ImportToken, PublicKey, AttestationDocument, …);
 * - every member whose name says it is a credential: *Token(s), *Secret*, *Password*, *Pin*,
 *   *Credential*, *PrivateKey*, Plaintext*, Ciphertext* (even when given as a string).
 * Encryption contexts are kept (AWS logs them; they are not secret by design) with their keys
 * as given. Long strings are cut so one request cannot bloat the trail.
 */
const SECRET_NAME = /token|secret|password|passphrase|pin$|^pin|credential|privatekey|plaintext|ciphertext/i;
/** Members whose children are user data (map keys), not parameter names. */
const VERBATIM_CHILDREN = /encryptioncontext/i;
const MAX_STRING = 4096;
const MAX_DEPTH = 8;

export function sanitize(value: unknown): Record<string, unknown> | null {
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) return null;
  const out = clean(value, false, 0);
  return out && typeof out === 'object' && Object.keys(out).length ? (out as Record<string, unknown>) : null;
}

function clean(value: unknown, verbatimKeys: boolean, depth: number): unknown {
  if (value === null || value === undefined) return undefined;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array || value instanceof ArrayBuffer) return undefined;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'string') return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}…[truncated]` : value;
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value !== 'object' || depth >= MAX_DEPTH) return undefined;
  if (Array.isArray(value)) {
    const items = value.map((v) => clean(v, verbatimKeys, depth + 1)).filter((v) => v !== undefined);
    return items;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (!verbatimKeys && SECRET_NAME.test(k)) continue;
    const c = clean(v, verbatimKeys || VERBATIM_CHILDREN.test(k), depth + 1);
    if (c !== undefined) out[verbatimKeys ? k : lowerCamel(k)] = c;
  }
  return out;
}

const lowerCamel = (k: string): string => (k.length && k[0] !== k[0]!.toLowerCase() ? k[0]!.toLowerCase() + k.slice(1) : k);

/** CloudTrail marks calls that change nothing read-only, cryptographic calls included. */
export function isReadOnly(eventName: string): boolean {
  return /^(Describe|List|Get|Encrypt|Decrypt|ReEncrypt|Generate|Sign|Verify|Derive)/.test(eventName);
}
