import { createHash } from 'node:crypto';

/**
 * Byte layouts of the AWS KMS External Key Store (XKS) proxy API v1
 * (aws/aws-kms-xksproxy-api-spec, xks_proxy_api_spec.md). Pure functions, no I/O.
 *
 * ciphertextMetadata, format 0x01 (5 bytes; the spec allows up to 20):
 *
 *   offset  size  field
 *   0       1     metadata format (0x01: AAD built as below, AES-256-GCM, 96-bit IV)
 *   1       4     key-material version of the daemon key, u32 big-endian
 *
 * The token's AES-GCM AAD is the spec's layout:
 *
 *   u16be len(additionalAuthenticatedData) ‖ additionalAuthenticatedData ‖ u8 len(ciphertextMetadata) ‖ ciphertextMetadata
 *
 * An absent field counts as empty (length 0), so the metadata is authenticated by the tag and
 * cannot be moved into the AAD field (or back) without the decrypt failing.
 */
export const XKS_METADATA_FORMAT_V1 = 0x01;
export const XKS_METADATA_BYTES = 5;
/** Spec limits. */
export const XKS_MAX_METADATA_BYTES = 20;
export const XKS_MAX_AAD_ENCODABLE = 0xffff;
export const XKS_TAG_BYTES = 16;

const EMPTY = Buffer.alloc(0);

export function encodeCiphertextMetadata(version: number): Buffer {
  const m = Buffer.allocUnsafe(XKS_METADATA_BYTES);
  m[0] = XKS_METADATA_FORMAT_V1;
  m.writeUInt32BE(version, 1);
  return m;
}

/** The key-material version a metadata blob names, or undefined when it is not ours. */
export function parseCiphertextMetadata(m: Buffer | undefined): number | undefined {
  if (!m || m.length !== XKS_METADATA_BYTES || m[0] !== XKS_METADATA_FORMAT_V1) return undefined;
  const version = m.readUInt32BE(1);
  return version >= 1 ? version : undefined;
}

/** The AAD given to the token: 2-byte AAD length ‖ AAD ‖ 1-byte metadata length ‖ metadata. */
export function xksTokenAad(aad: Buffer | undefined, metadata: Buffer | undefined): Buffer {
  const a = aad ?? EMPTY;
  const m = metadata ?? EMPTY;
  if (a.length > XKS_MAX_AAD_ENCODABLE) throw new RangeError('additionalAuthenticatedData longer than 65535 bytes');
  if (m.length > 0xff) throw new RangeError('ciphertextMetadata longer than 255 bytes');
  const out = Buffer.allocUnsafe(2 + a.length + 1 + m.length);
  out.writeUInt16BE(a.length, 0);
  a.copy(out, 2);
  out[2 + a.length] = m.length;
  m.copy(out, 3 + a.length);
  return out;
}

/**
 * ciphertextDataIntegrityValue (Appendix C): SHA-256 over
 * additionalAuthenticatedData ‖ ciphertextMetadata ‖ initializationVector ‖ ciphertext ‖ authenticationTag,
 * absent fields counting as the empty string. Returns the 32-byte digest (the wire form is its Base64).
 */
export function ciphertextDataIntegrityValue(
  aad: Buffer | undefined,
  metadata: Buffer | undefined,
  iv: Buffer,
  ciphertext: Buffer,
  tag: Buffer,
): Buffer {
  const h = createHash('sha256');
  if (aad) h.update(aad);
  if (metadata) h.update(metadata);
  return h.update(iv).update(ciphertext).update(tag).digest();
}
