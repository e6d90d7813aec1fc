import { Errors } from '../errors.js';
import type { AeadShape } from '../hsm/token.js';

/**
 * Symmetric ciphertext blob (all integers big-endian):
 *
 *   offset  size  field
 *   0       1     format version: 0x01, 0x02 or 0x03 (below)
 *   1       16    KMS key id (the UUID's 16 bytes, or a Multi-Region key's 16 bytes: see keyIdToBytes)
 *   17      4     key-material version (u32)
 *   21      iv    the IV actually used (chosen by the daemon or by the token)
 *   21+iv   …     the sealed plaintext
 *
 *   0x01  AES-256-GCM, 12-byte IV; sealed = ciphertext ‖ 16-byte tag
 *   0x02  AES-256-GCM, 16-byte IV (Luna in FIPS mode); sealed = ciphertext ‖ 16-byte tag
 *   0x03  AES-256-CBC + HMAC-SHA-256 (tokens without GCM), 16-byte IV;
 *         sealed = ciphertext (PKCS#7-padded) ‖ 32-byte tag (src/hsm/verbs/aead-cbc-hmac.ts)
 *
 * The 21-byte header is authenticated: AAD = header || canonical encryption context.
 * Decrypting therefore needs the same key, the same material version, and the same context;
 * the version byte is in the header, so a blob cannot be re-labelled as another format.
 */
export const FORMAT_V1 = 0x01;
export const HEADER_BYTES = 21;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const OVERHEAD = HEADER_BYTES + IV_BYTES + TAG_BYTES;

/** The formats by version byte: the token's sealing shape and the minimum length of the sealed part. */
const FORMATS: Record<number, { shape: AeadShape; minSealed: number }> = {
  0x01: { shape: { scheme: 'aes-gcm', ivBytes: 12 }, minSealed: 16 },
  0x02: { shape: { scheme: 'aes-gcm', ivBytes: 16 }, minSealed: 16 },
  0x03: { shape: { scheme: 'aes-cbc-hmac-sha256', ivBytes: 16 }, minSealed: 48 },
};

/** The format version byte for what a token's seal() gives. */
export function formatFor(shape: AeadShape): number {
  for (const [version, f] of Object.entries(FORMATS)) {
    if (f.shape.scheme === shape.scheme && f.shape.ivBytes === shape.ivBytes) return Number(version);
  }
  throw Errors.internal(`No ciphertext format for ${shape.scheme} with ${shape.ivBytes}-byte IVs.`);
}

export interface ParsedCiphertext {
  keyId: string;
  version: number;
  header: Buffer;
  shape: AeadShape;
  iv: Buffer;
  sealed: Buffer;
}

/**
 * A key id in 16 bytes. Single-Region ids are random (version 4) UUIDs; Multi-Region ids are
 * `mrk-` and 32 hex digits whose 7th byte has a high nibble of 0 (newMultiRegionKeyId), which
 * no version-4 UUID has, so the bytes name exactly one id of either kind.
 */
export function keyIdToBytes(keyId: string): Buffer {
  return Buffer.from(keyId.startsWith('mrk-') ? keyId.slice(4) : keyId.replace(/-/g, ''), 'hex');
}

export function bytesToKeyId(b: Buffer): string {
  const h = b.toString('hex');
  if (((b[6] as number) >> 4) === 0) return `mrk-${h}`;
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function encodeHeader(keyId: string, version: number, format = FORMAT_V1): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header[0] = format;
  keyIdToBytes(keyId).copy(header, 1);
  header.writeUInt32BE(version, 17);
  return header;
}

export function encodeCiphertext(header: Buffer, iv: Buffer, sealed: Buffer): Buffer {
  return Buffer.concat([header, iv, sealed]);
}

export function parseCiphertext(blob: Buffer): ParsedCiphertext {
  const format = blob.length > 0 ? FORMATS[blob[0]!] : undefined;
  if (!format || blob.length < HEADER_BYTES + format.shape.ivBytes + format.minSealed) {
    throw Errors.invalidCiphertext('The ciphertext is invalid or was not produced by this key store.');
  }
  const ivEnd = HEADER_BYTES + format.shape.ivBytes;
  return {
    keyId: bytesToKeyId(blob.subarray(1, 17)),
    version: blob.readUInt32BE(17),
    header: blob.subarray(0, HEADER_BYTES),
    shape: format.shape,
    iv: blob.subarray(HEADER_BYTES, ivEnd),
    sealed: blob.subarray(ivEnd),
  };
}
