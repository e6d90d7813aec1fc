import { Errors } from '../errors.js';

/**
 * Symmetric ciphertext blob, format version 1 (all integers big-endian):
 *
 *   offset  size  field
 *   0       1     format version (0x01)
 *   1       16    KMS key id (the UUID's 16 bytes, or a Multi-Region key's 16 bytes: see keyIdToBytes)
 *   17      4     key-material version (u32)
 *   21      12    AES-GCM IV
 *   33      n+16  AES-256-GCM ciphertext of the n-byte plaintext, then the 16-byte tag
 *
 * The 21-byte header is authenticated: AAD = header || canonical encryption context.
 * Decrypting therefore needs the same key, the same material version, and the same context.
 */
export const FORMAT_V1 = 0x01;
export const HEADER_BYTES = 21;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const OVERHEAD = HEADER_BYTES + IV_BYTES + TAG_BYTES;

export interface ParsedCiphertext {
  keyId: string;
  version: number;
  header: Buffer;
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

export function encodeHeader(keyId: string, version: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header[0] = FORMAT_V1;
  keyIdToBytes(keyId).copy(header, 1);
  header.writeUInt32BE(version, 17);
  return header;
}

export function encodeCiphertext(header: Buffer, iv: Buffer, sealed: Buffer): Buffer {
  return Buffer.concat([header, iv, sealed]);
}

export function parseCiphertext(blob: Buffer): ParsedCiphertext {
  if (blob.length < OVERHEAD || blob[0] !== FORMAT_V1) {
    throw Errors.invalidCiphertext('The ciphertext is invalid or was not produced by this key store.');
  }
  return {
    keyId: bytesToKeyId(blob.subarray(1, 17)),
    version: blob.readUInt32BE(17),
    header: blob.subarray(0, HEADER_BYTES),
    iv: blob.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES),
    sealed: blob.subarray(HEADER_BYTES + IV_BYTES),
  };
}
