import { randomBytes } from 'node:crypto';
import type { GrantConstraintsRecord, GrantRecord } from '../store/authz-records.js';

/**
 * The rules of grants that do not depend on storage: grant ids and tokens, encryption-context
 * constraints, and the limits on grants created from a grant.
 */

/** Every operation a grant may allow (GrantOperation in the AWS API). */
export const GRANT_OPERATIONS = [
  'Decrypt', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'ReEncryptFrom', 'ReEncryptTo', 'Sign',
  'Verify', 'GetPublicKey', 'CreateGrant', 'RetireGrant', 'DescribeKey', 'GenerateDataKeyPair',
  'GenerateDataKeyPairWithoutPlaintext', 'GenerateMac', 'VerifyMac', 'DeriveSharedSecret',
] as const;
export const GRANT_OPERATION_SET: ReadonlySet<string> = new Set(GRANT_OPERATIONS);

/** A grant id: 64 hex characters, like AWS's. */
export const GRANT_ID = /^[0-9a-f]{64}$/;
export const newGrantId = (): string => randomBytes(32).toString('hex');

const TOKEN_MAGIC = Buffer.from('p11kmsGT', 'ascii');
const TOKEN_VERSION = 1;
const TOKEN_BYTES = TOKEN_MAGIC.length + 1 + 32 + 16;

/**
 * A grant token names its grant (and carries random bytes so tokens cannot be guessed from a
 * grant id). Tokens are not secrets in AWS and they are not here: grants take effect at once in
 * this daemon, so a token only has to be recognised and can identify a grant to RetireGrant.
 */
export function newGrantToken(grantId: string): string {
  return Buffer.concat([TOKEN_MAGIC, Buffer.from([TOKEN_VERSION]), Buffer.from(grantId, 'hex'), randomBytes(16)]).toString('base64');
}

/** The grant id a token names, or undefined when the token is not one of ours. */
export function grantIdOfToken(token: string): string | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(token)) return undefined;
  const b = Buffer.from(token, 'base64');
  if (b.length !== TOKEN_BYTES || !b.subarray(0, TOKEN_MAGIC.length).equals(TOKEN_MAGIC) || b[TOKEN_MAGIC.length] !== TOKEN_VERSION) {
    return undefined;
  }
  return b.subarray(TOKEN_MAGIC.length + 1, TOKEN_MAGIC.length + 33).toString('hex');
}

/** Constraint keys compare without letter case, values exactly (as the AWS API Reference says). */
function valuesFor(ec: Record<string, string>, key: string): string[] {
  const k = key.toLowerCase();
  return Object.entries(ec)
    .filter(([ek]) => ek.toLowerCase() === k)
    .map(([, v]) => v);
}

function includesAll(ec: Record<string, string>, required: Record<string, string>): boolean {
  return Object.entries(required).every(([k, v]) => valuesFor(ec, k).includes(v));
}

function sameContext(a: Record<string, string>, b: Record<string, string>): boolean {
  return Object.keys(a).length === Object.keys(b).length && includesAll(a, b);
}

/** Whether a request's encryption context satisfies a grant's constraints. */
export function constraintsAllow(c: GrantConstraintsRecord | undefined, ec: Record<string, string> | undefined): boolean {
  if (!c) return true;
  const context = ec ?? {};
  if (c.EncryptionContextEquals && !sameContext(context, c.EncryptionContextEquals)) return false;
  if (c.EncryptionContextSubset && !includesAll(context, c.EncryptionContextSubset)) return false;
  return true;
}

/**
 * Whether a child grant's constraints are at least as strict as its parent's: an Equals
 * constraint must be kept as is; a Subset constraint may gain pairs or become an Equals
 * constraint that contains its pairs, but cannot lose pairs.
 */
export function atLeastAsStrict(parent: GrantConstraintsRecord | undefined, child: GrantConstraintsRecord | undefined): boolean {
  if (!parent) return true;
  const pe = parent.EncryptionContextEquals;
  const ps = parent.EncryptionContextSubset;
  const ce = child?.EncryptionContextEquals;
  const cs = child?.EncryptionContextSubset;
  if (pe && !(ce && sameContext(ce, pe))) return false;
  if (ps && !((ce && includesAll(ce, ps)) || (cs && includesAll(cs, ps)))) return false;
  return true;
}

/** Same grant, for CreateGrant's Name idempotency: every parameter equal. */
export function sameGrant(
  g: GrantRecord,
  p: { name?: string | undefined; granteePrincipal: string; retiringPrincipal?: string | undefined; operations: readonly string[]; constraints?: GrantConstraintsRecord | undefined },
): boolean {
  const ops = (o: readonly string[]) => [...new Set(o)].sort().join(',');
  const canon = (c: GrantConstraintsRecord | undefined) =>
    JSON.stringify([c?.EncryptionContextEquals, c?.EncryptionContextSubset].map((e) => (e ? Object.entries(e).sort() : null)));
  return (
    g.name === p.name &&
    g.granteePrincipal === p.granteePrincipal &&
    g.retiringPrincipal === p.retiringPrincipal &&
    ops(g.operations) === ops(p.operations) &&
    canon(g.constraints) === canon(p.constraints)
  );
}
