import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { SOFTHSM_MODULE, type TempToken } from './softhsm.js';

export interface InspectedObject {
  label: string;
  id: string;
  token: boolean;
  priv: boolean;
  sensitive: boolean;
  extractable: boolean;
  modifiable: boolean;
  neverExtractable: boolean;
  valueRead: string;
  wrapped: string;
}

/** Every p11kms object (label prefix 'p11kms:' unless given) in the token, as seen by another process logged in with the user PIN. */
export function inspectToken(t: TempToken, labelPrefix = 'p11kms:'): InspectedObject[] {
  const out = execFileSync(process.execPath, [resolve(import.meta.dirname, 'inspect-token.mjs'), SOFTHSM_MODULE, t.label, t.userPin, labelPrefix], {
    env: { ...process.env, SOFTHSM2_CONF: t.conf },
  });
  return JSON.parse(out.toString()) as InspectedObject[];
}
