import pkcs11js from 'pkcs11js';
import { oaepDecode, oaepMechanism } from '../asymmetric.js';
import { ckrOf, isSessionLost, isStaleHandle } from '../ckr.js';
import { AuthenticationFailed, type Handle, type TokenCore } from '../session-core.js';

/**
 * The unwrapping steps every import shares (AES, HMAC, RSA and EC material; verbs/wrap.ts and
 * verbs/import.ts): RSA-OAEP in the token or, where allowed, raw RSA plus OAEP decoding here,
 * then RFC 5649 under the module's mechanism number.
 */

export type OaepHash = 'sha1' | 'sha256';

/** Thrown when a wrapped key does not unwrap (wrong wrapping key, algorithm, or a damaged blob). */
export class UnwrapFailed extends AuthenticationFailed {}
/** Thrown when unwrapped material is not usable as the key it should be. */
export class KeyMaterialRejected extends AuthenticationFailed {}

export interface ImportWrapping {
  hash: OaepHash;
  aesKeyWrap: boolean;
  modulusBytes: number;
  /** Raw RSA in the token and OAEP decoding in the daemon (see unwrapImport). */
  rawOaep?: boolean | undefined;
}

/**
 * A token object's id, label and protection, or a session object's. Last in a template: SoftHSM2
 * applies attributes in order, and after CKA_MODIFIABLE=false it refuses the rest of an unwrap
 * template (CKR_ATTRIBUTE_READ_ONLY).
 */
export function placement(core: TokenCore, target?: { id: Buffer; label: string }): pkcs11js.Template {
  if (target) return core.templates.protectedObject(target.id, target.label);
  return [{ type: pkcs11js.CKA_TOKEN, value: false }, { type: pkcs11js.CKA_PRIVATE, value: true }];
}

/**
 * The OAEP step of an import, then (RSA_AES_KEY_WRAP) the RFC 5649 step, into `template`.
 * Normally both are C_UnwrapKey in the token. With `rawOaep` (a module without OAEP for this
 * hash, where the capabilities allow it: see missingForImport) the RSA step is raw RSA in the
 * token (CKM_RSA_X_509), the OAEP decoding happens here, and the decoded bytes — the ephemeral
 * AES key, or the material itself — go straight into a token object by C_CreateObject; every
 * buffer that held them is zeroed. Session objects made on the way are pushed to `ephemeral`.
 */
export async function unwrapImport(
  core: TokenCore, s: Handle, rsa: Handle, wrapping: ImportWrapping & { rawOaep?: boolean | undefined }, blob: Buffer,
  template: pkcs11js.Template, ephemeral: Handle[],
): Promise<Handle> {
  const rsaPart = wrapping.aesKeyWrap ? blob.subarray(0, wrapping.modulusBytes) : blob;
  const kekTemplate = core.templates.sessionAes({ unwrap: true });
  if (!wrapping.rawOaep) {
    if (!wrapping.aesKeyWrap) return unwrap(core, s, oaepMechanism(wrapping.hash), rsa, rsaPart, template);
    const kek = await unwrap(core, s, oaepMechanism(wrapping.hash), rsa, rsaPart, kekTemplate);
    ephemeral.push(kek);
    return unwrap(core, s, { mechanism: core.kwpMechanism }, kek, blob.subarray(wrapping.modulusBytes), template);
  }
  const decoded = await rawOaepDecode(core, s, rsa, wrapping.hash, rsaPart, wrapping.modulusBytes);
  try {
    if (!wrapping.aesKeyWrap) return createWithValue(core, s, template, decoded);
    const kek = createWithValue(core, s, kekTemplate, decoded);
    ephemeral.push(kek);
    return await unwrap(core, s, { mechanism: core.kwpMechanism }, kek, blob.subarray(wrapping.modulusBytes), template);
  } finally {
    decoded.fill(0);
  }
}

/** Raw RSA in the token, then RFC 8017 OAEP decoding here; a block that does not decode is UnwrapFailed. */
async function rawOaepDecode(core: TokenCore, s: Handle, rsa: Handle, hash: OaepHash, block: Buffer, k: number): Promise<Buffer> {
  if (block.length !== k) throw new UnwrapFailed();
  let out: Buffer;
  try {
    core.p.C_DecryptInit(s, { mechanism: pkcs11js.CKM_RSA_X_509 }, rsa);
    out = await core.p.C_DecryptAsync(s, block, Buffer.alloc(k));
  } catch (e) {
    if (ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new UnwrapFailed();
    throw e;
  }
  const em = out.length === k ? out : Buffer.concat([Buffer.alloc(k - out.length), out]);
  const decoded = oaepDecode(hash, em, k);
  out.fill(0);
  em.fill(0);
  if (!decoded) throw new UnwrapFailed();
  return decoded;
}

/** C_CreateObject of a secret key from decoded bytes (the template minus CKA_VALUE_LEN, plus CKA_VALUE). */
function createWithValue(core: TokenCore, s: Handle, template: pkcs11js.Template, value: Buffer): Handle {
  const t = template.filter((a) => a.type !== pkcs11js.CKA_VALUE_LEN);
  // CKA_VALUE before the placement attributes (CKA_MODIFIABLE=false last, see placement()).
  const at = t.findIndex((a) => a.type === pkcs11js.CKA_ID || a.type === pkcs11js.CKA_TOKEN);
  t.splice(at < 0 ? t.length : at, 0, { type: pkcs11js.CKA_VALUE, value });
  try {
    return core.p.C_CreateObject(s, t);
  } catch (e) {
    if (ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new KeyMaterialRejected();
    throw e;
  }
}

/** C_UnwrapKey; any refusal by the token is UnwrapFailed (wrong key, algorithm or damaged blob). */
export async function unwrap(core: TokenCore, s: Handle, mech: pkcs11js.Mechanism, withKey: Handle, data: Buffer, t: pkcs11js.Template): Promise<Handle> {
  try {
    return await core.p.C_UnwrapKeyAsync(s, mech, withKey, data, t);
  } catch (e) {
    if (ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new UnwrapFailed();
    throw e;
  }
}

/** A CK_ULONG attribute value in the platform's byte order and width. */
export function readUlong(b: Buffer): number {
  if (b.length >= 8) return Number(b.readBigUInt64LE(0));
  return b.readUInt32LE(0);
}
