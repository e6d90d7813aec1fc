import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { SOFTHSM_MODULE, type TempToken } from './softhsm.js';

export interface InspectedObject {
  label: string;
  id: string;
  /** CKA_CLASS: 'secret', 'private' or 'public'. */
  cls: string;
  /** CKA_KEY_TYPE: 'AES', 'RSA', 'EC', 'GENERIC_SECRET'. */
  keyType: string;
  /** Boolean attributes; null where the attribute does not belong to the object's class. */
  token: boolean | null;
  priv: boolean | null;
  sensitive: boolean | null;
  extractable: boolean | null;
  modifiable: boolean | null;
  neverExtractable: boolean | null;
  sign: boolean | null;
  verify: boolean | null;
  encrypt: boolean | null;
  decrypt: boolean | null;
  derive: boolean | null;
  wrap: boolean | null;
  unwrap: boolean | null;
  /** Reading the secret value (CKA_VALUE, or CKA_PRIVATE_EXPONENT for RSA; the public value for public keys): 'READABLE' or the CKR. */
  valueRead: string;
  /** Wrapping under a fresh AES key: 'WRAPPED' or the CKR ('n/a' for public keys). */
  wrapped: string;
}

/**
 * Every p11kms object in the token (label prefix `p11kms:` by default), as seen by another
 * process logged in with the user PIN.
 */
export function inspectToken(t: TempToken, labelPrefix = 'p11kms:'): InspectedObject[] {
  return inspectModule({ module: SOFTHSM_MODULE, label: t.label, pin: t.userPin, env: { SOFTHSM2_CONF: t.conf } }, labelPrefix);
}

/** The same for any module (NSS softoken: with its init arguments). */
export function inspectModule(
  m: { module: string; label: string; pin: string; libraryParameters?: string; env?: Record<string, string> },
  labelPrefix = 'p11kms:',
): InspectedObject[] {
  const args = [resolve(import.meta.dirname, 'inspect-token.mjs'), m.module, m.label, m.pin, labelPrefix];
  if (m.libraryParameters) args.push(m.libraryParameters);
  const out = execFileSync(process.execPath, args, { env: { ...process.env, ...m.env } });
  return JSON.parse(out.toString()) as InspectedObject[];
}
