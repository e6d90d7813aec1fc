/**
 * The REST door speaks AWS's member names in lower camel case (`CiphertextBlob` →
 * `ciphertextBlob`, `AWSAccountId` → `awsAccountId`), blobs as base64 and timestamps as
 * RFC 3339 strings.
 */

/** Lower camel case of an AWS member name: a leading acronym is lowered as one word. */
export function camel(name: string): string {
  const run = /^[A-Z]+/.exec(name)?.[0] ?? '';
  if (run.length <= 1) return name.charAt(0).toLowerCase() + name.slice(1);
  // 'AWSAccountId': the last capital of the run starts the next word; 'ARN' alone is all acronym.
  const acronym = run.length === name.length ? run : run.slice(0, -1);
  return acronym.toLowerCase() + name.slice(acronym.length);
}

/** Members whose values are maps of the caller's own names, passed through untouched. */
const FREE_FORM = new Set(['EncryptionContext', 'SourceEncryptionContext', 'DestinationEncryptionContext']);

/** A core result on the REST wire: camel-case members, base64 blobs, RFC 3339 dates, absent members omitted. */
export function toRest(value: unknown): unknown {
  if (value === null || value === undefined) return undefined;
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toRest);
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const w = FREE_FORM.has(k) ? v : toRest(v);
      if (w !== undefined) out[camel(k)] = w;
    }
    return out;
  }
  return value;
}
