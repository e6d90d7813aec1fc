import { createHash, createPublicKey } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { Secret } from '../secret.js';
import { rsaSpki } from './asymmetric.js';
import { ckrName, ckrOf } from './ckr.js';
import { loadModule } from './module.js';
import { KeyTemplates } from './templates.js';

/**
 * Peering set-up for Multi-Region keys (issue 13), run by an operator outside the daemon's
 * sessions (`p11kms peer-key …`, src/cli/peer-keys.ts). Key material of a Multi-Region key is
 * CKA_EXTRACTABLE with CKA_WRAP_WITH_TRUSTED: the token wraps it only under a key whose
 * CKA_TRUSTED is true, and only the security officer can set that. So:
 *
 *  - each receiving token has one RSA key pair, its *receive key* (user PIN): the private half
 *    can only unwrap, is sensitive and never extractable; the public half is exported;
 *  - the SO of each sending token imports the receiving side's public key as a *trusted peer
 *    key* (CKA_TRUSTED, CKA_WRAP; a public object, the only kind an SO session can create).
 *
 * Trust is granted here, once per peer (and again when a receive key is replaced), never by the
 * daemon. A secret wrapping key is never made trusted: an SO-created secret key is public, so
 * any session without a PIN could unwrap a stolen blob with it.
 */

export const RECEIVE_LABEL = 'p11kms-peer-receive';
export const TRUSTED_LABEL_PREFIX = 'p11kms-peer-trusted:';
export const RECEIVE_MODULUS_BITS = 3072;

/** CKA_ID of a peer key object: derived from its label, so both sides find it without a record. */
export const peerKeyId = (label: string): Buffer => createHash('sha256').update(label).digest().subarray(0, 20);
export const trustedLabel = (peer: string): string => `${TRUSTED_LABEL_PREFIX}${peer}`;

export interface TokenAccess {
  module: string;
  tokenLabel: string;
  moduleEnv?: Record<string, string> | undefined;
}

type Handle = Buffer;

/** Opens an R/W session on the token, logged in as `user`, runs fn, logs out and closes. */
function withSession<T>(access: TokenAccess, user: number, pin: Secret, fn: (p: pkcs11js.PKCS11, s: Handle) => T): T {
  const p = loadModule(access.module, access.moduleEnv).pkcs11;
  const slot = p.C_GetSlotList(true).find((sl) => {
    try {
      return p.C_GetTokenInfo(sl).label.trim() === access.tokenLabel;
    } catch {
      return false;
    }
  });
  if (!slot) throw new Error(`No token labelled '${access.tokenLabel}' in module ${access.module}`);
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    try {
      p.C_Login(s, user, pin.reveal());
    } catch (e) {
      throw new Error(`Login as ${user === pkcs11js.CKU_SO ? 'security officer' : 'user'} failed: ${ckrName(ckrOf(e))}`);
    }
    try {
      return fn(p, s);
    } finally {
      try {
        p.C_Logout(s);
      } catch {
        /* the session closes below anyway */
      }
    }
  } finally {
    p.C_CloseSession(s);
  }
}

function find(p: pkcs11js.PKCS11, s: Handle, template: pkcs11js.Template): Handle[] {
  p.C_FindObjectsInit(s, template);
  try {
    return p.C_FindObjects(s, 16);
  } finally {
    p.C_FindObjectsFinal(s);
  }
}

function spkiOf(p: pkcs11js.PKCS11, s: Handle, pub: Handle): Buffer {
  const [n, e] = p.C_GetAttributeValue(s, pub, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
  return rsaSpki(n?.value as Buffer, e?.value as Buffer);
}

/**
 * The receive key of this token (created on first use, with the user PIN): returns its public
 * half as DER SubjectPublicKeyInfo, for the peer's SO to trust.
 */
export function receiveKey(access: TokenAccess, userPin: Secret): Buffer {
  return withSession(access, pkcs11js.CKU_USER, userPin, (p, s) => {
    const id = peerKeyId(RECEIVE_LABEL);
    // The public half has an id of its own: the daemon finds the private half by CKA_ID alone.
    const pubId = peerKeyId(`${RECEIVE_LABEL}:public`);
    const pub = find(p, s, [{ type: pkcs11js.CKA_ID, value: pubId }, { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY }])[0];
    if (pub) return spkiOf(p, s, pub);
    const pair = p.C_GenerateKeyPair(
      s,
      { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN },
      [
        { type: pkcs11js.CKA_ID, value: pubId },
        { type: pkcs11js.CKA_LABEL, value: RECEIVE_LABEL },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: false },
        { type: pkcs11js.CKA_MODULUS_BITS, value: RECEIVE_MODULUS_BITS },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
        { type: pkcs11js.CKA_ENCRYPT, value: false },
        { type: pkcs11js.CKA_WRAP, value: false },
        { type: pkcs11js.CKA_VERIFY, value: false },
      ],
      new KeyTemplates({ modifiableFalse: false, aesExplicitSensitive: true }).unwrapOnlyRsaPrivate(id, RECEIVE_LABEL),
    );
    return spkiOf(p, s, pair.publicKey);
  });
}

/**
 * The SO step: imports a peer's receive public key (DER SPKI or PEM) as this token's trusted
 * wrapping key for `peer`, replacing an earlier one. Returns the key's SHA-256 fingerprint.
 */
export function trustPeerKey(access: TokenAccess, soPin: Secret, peer: string, publicKey: Buffer | string): string {
  const key = createPublicKey(typeof publicKey === 'string' ? publicKey : { key: publicKey, format: 'der', type: 'spki' });
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty !== 'RSA' || !jwk.n || !jwk.e) throw new Error('The peer key must be an RSA public key.');
  const label = trustedLabel(peer);
  const id = peerKeyId(label);
  withSession(access, pkcs11js.CKU_SO, soPin, (p, s) => {
    for (const old of find(p, s, [{ type: pkcs11js.CKA_ID, value: id }])) p.C_DestroyObject(s, old);
    p.C_CreateObject(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_RSA },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_MODULUS, value: Buffer.from(jwk.n as string, 'base64url') },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from(jwk.e as string, 'base64url') },
      { type: pkcs11js.CKA_TRUSTED, value: true },
      { type: pkcs11js.CKA_WRAP, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_VERIFY, value: false },
    ]);
  });
  return createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('hex');
}
