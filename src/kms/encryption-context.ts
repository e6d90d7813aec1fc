/**
 * Canonical, unambiguous encoding of an encryption context for use as AES-GCM AAD:
 * u32 pair count, then for each pair sorted by the UTF-8 bytes of its key:
 * u32 key length, key bytes, u32 value length, value bytes (all big-endian).
 * Length prefixes make {"ab":"c"} and {"a":"bc"} different; sorting makes key order irrelevant.
 */
export function canonicalEncryptionContext(ec: Record<string, string> | undefined): Buffer {
  const pairs = Object.entries(ec ?? {}).map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const);
  pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
  let size = 4;
  for (const [k, v] of pairs) size += 8 + k.length + v.length;
  const out = Buffer.allocUnsafe(size);
  let at = out.writeUInt32BE(pairs.length, 0);
  for (const [k, v] of pairs) {
    at = out.writeUInt32BE(k.length, at);
    at += k.copy(out, at);
    at = out.writeUInt32BE(v.length, at);
    at += v.copy(out, at);
  }
  return out;
}
