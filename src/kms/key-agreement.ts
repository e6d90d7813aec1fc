import { createPublicKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { Errors } from '../errors.js';
import { CURVES, type Curve } from '../hsm/asymmetric.js';
import { operation } from './context.js';
import { kindOf, requireAlgorithm, specInfo } from './key-specs.js';
import { keyFor } from './key-use.js';
import { dryRunStop, noRecipient } from './request-flags.js';
import { blob, DRY_RUN, GRANT_TOKENS, KEY_ID, oneOf, RECIPIENT, str } from './validation.js';
import { tokenFor } from './token-for.js';

/**
 * DeriveSharedSecret: ECDH (CKM_ECDH1_DERIVE, no KDF) between a KEY_AGREEMENT key's private
 * half in the token and a peer's public key (DER SubjectPublicKeyInfo on the same curve).
 * The raw shared secret (the x coordinate) is returned, as AWS returns it.
 */

/** The peer's uncompressed point, after node:crypto has parsed the SPKI and checked the point is on the curve. */
function peerPoint(spki: Buffer, curve: Curve): Buffer {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw Errors.validation('PublicKey must be a DER-encoded X.509 SubjectPublicKeyInfo.');
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== CURVES[curve].oidName) {
    throw Errors.validation(`PublicKey must be an elliptic-curve public key on the KMS key's curve (${curve}).`);
  }
  const jwk = key.export({ format: 'jwk' });
  const n = CURVES[curve].bytes;
  const coordinate = (b64: string | undefined) => {
    const v = Buffer.from(b64 ?? '', 'base64url');
    return Buffer.concat([Buffer.alloc(n - v.length), v]);
  };
  return Buffer.concat([Buffer.from([0x04]), coordinate(jwk.x), coordinate(jwk.y)]);
}

export const DeriveSharedSecret = operation(
  z.object({
    KeyId: KEY_ID,
    KeyAgreementAlgorithm: oneOf(['ECDH']),
    PublicKey: blob(1, 8192),
    GrantTokens: GRANT_TOKENS,
    DryRun: DRY_RUN,
    Recipient: RECIPIENT,
  }),
  async (deps, ctx, input) => {
    noRecipient(input.Recipient);
    const { key, material } = keyFor(deps, ctx, input.KeyId, 'DeriveSharedSecret', 'KEY_AGREEMENT');
    requireAlgorithm(key, input.KeyAgreementAlgorithm, specInfo(key.keySpec).agreement);
    const kind = kindOf(key);
    if (kind.type !== 'ec') throw Errors.internal(`${key.keySpec} is not an elliptic-curve key spec.`);
    const point = peerPoint(input.PublicKey, kind.curve);
    dryRunStop(input.DryRun);
    const secret = await tokenFor(deps, key).deriveEcdh(material.objectId, kind.curve, point);
    return { KeyId: key.arn, SharedSecret: secret, KeyAgreementAlgorithm: 'ECDH', KeyOrigin: key.origin };
  },
);
