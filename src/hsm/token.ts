import { KmsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CURVES, HashName, KeyKind, PairUsage, SignScheme } from './asymmetric.js';
import { ckrName, ckrOf } from './ckr.js';
import { loadModule, reinitializeIdleModule } from './module.js';
import { CapabilitiesSchema } from './profile.js';
import { TokenCore, TokenOpenError, type TokenOptions } from './session-core.js';
import { AeadVerbs, type AeadShape, type Sealed } from './verbs/aead.js';
import { AsymmetricVerbs } from './verbs/asymmetric.js';
import { DataObjectVerbs, type TokenObjectInfo } from './verbs/data-objects.js';
import { HmacVerbs } from './verbs/hmac.js';
import { RandomVerbs } from './verbs/random.js';
import { WrapVerbs, type OaepHash } from './verbs/wrap.js';
import { ImportVerbs, type ImportedKind, type ImportWrapping } from './verbs/import.js';

export {
  AuthenticationFailed, describeReason, TokenOpenError, type TokenOptions, type TokenState,
} from './session-core.js';
export type { TokenObjectInfo } from './verbs/data-objects.js';
export type { AeadShape, Sealed } from './verbs/aead.js';
export type { AeadScheme } from './profile.js';
export { KeyMaterialRejected, NoTrustedKey, UnwrapFailed, type OaepHash } from './verbs/wrap.js';
export type { ImportedKind } from './verbs/import.js';

/** How often a start-up looks for a token a per-process module did not show, and the pause between looks (ms). */
const TOKEN_LOOKS = 6;
const TOKEN_LOOK_PAUSE_MS = 50;

/**
 * One PKCS#11 token as the rest of the daemon sees it: keys are object ids with verbs; raw
 * handles and key material never leave src/hsm.
 *
 * Where things are: the session core (module, login, pool, recovery, handle cache) is
 * session-core.ts; each family of verbs is one file under verbs/ (aead.ts: AES keys and every
 * GCM IV behaviour; asymmetric.ts; hmac.ts; wrap.ts: data key pairs and imported material;
 * random.ts; data-objects.ts); key templates are templates.ts. This class only forwards.
 */
export class Token extends TokenCore {
  private readonly aead = new AeadVerbs(this);
  private readonly asymmetric = new AsymmetricVerbs(this);
  private readonly hmac = new HmacVerbs(this);
  private readonly wrap = new WrapVerbs(this);
  private readonly imports = new ImportVerbs(this);
  private readonly rng = new RandomVerbs(this);
  private readonly objects = new DataObjectVerbs(this);

  /** Connects and logs in; throws a clear error (without the PIN) when that is impossible. */
  static open(opts: TokenOptions, log: Logger): Token {
    const mod = loadModule(opts.module, opts.moduleEnv, opts.libraryParameters);
    // A module whose view of the token is per process (SoftHSM2's file store) can miss the token
    // while another process rewrites its token.object (SoftHSM 2.6 does at every C_Login): nodes
    // starting together on one token directory. It sees the token after a reinitialization.
    const perProcess = () => CapabilitiesSchema.parse(opts.capabilities ?? {}).objectList === 'per-process';
    for (let look = 1; ; look++) {
      try {
        return new Token(mod, opts, log);
      } catch (e) {
        if (e instanceof TokenOpenError && e.kind === 'not-found' && look < TOKEN_LOOKS && perProcess()) {
          // Start-up only (an idle module): a short blocking pause lets the other process finish writing.
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, TOKEN_LOOK_PAUSE_MS);
          if (reinitializeIdleModule(mod)) {
            log.warn({ token: opts.tokenLabel, look }, 'token not found; reinitializing the module and looking again');
            continue;
          }
        }
        if (e instanceof KmsError) throw e;
        throw new TokenOpenError(`Cannot open token '${opts.tokenLabel}': ${ckrName(ckrOf(e))}`, ckrOf(e), 'pkcs11');
      }
    }
  }

  // ── Symmetric keys and authenticated encryption (verbs/aead.ts) ──
  generateAesKey(id: Buffer, label: string, wrappable = false): Promise<void> {
    return this.aead.generateAesKey(id, label, wrappable);
  }
  /** The scheme and IV length seal() gives on this token (a ciphertext format records them). */
  get aeadShape(): AeadShape {
    return this.aead.shape;
  }
  /** Authenticated encryption in the token; returns the IV actually used, whoever chose it. */
  seal(id: Buffer, aad: Buffer, plaintext: Buffer): Promise<Sealed> {
    return this.aead.seal(id, aad, plaintext);
  }
  /** Inverse of seal(); throws AuthenticationFailed when the value does not authenticate. */
  open(id: Buffer, shape: AeadShape, iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> {
    return this.aead.open(id, shape, iv, aad, sealed);
  }
  /** AES-GCM with the caller's IV (ciphertext ‖ tag); refused on tokens that choose their own IVs. Prefer seal(). */
  async encryptGcm(id: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer> {
    return (await this.aead.sealWithIv(id, iv, aad, plaintext)).sealed;
  }
  /** AES-GCM decryption with the IV given back (every GCM IV mode). Prefer open(). */
  decryptGcm(id: Buffer, iv: Buffer, aad: Buffer, ciphertextAndTag: Buffer): Promise<Buffer> {
    return this.aead.open(id, { scheme: 'aes-gcm', ivBytes: iv.length }, iv, aad, ciphertextAndTag);
  }

  // ── Key pairs (verbs/asymmetric.ts) ──
  generateKeyPair(id: Buffer, label: string, kind: KeyKind, usage: PairUsage): Promise<void> {
    return this.asymmetric.generateKeyPair(id, label, kind, usage);
  }
  sign(id: Buffer, scheme: SignScheme, hash: HashName, digest: Buffer): Promise<Buffer> {
    return this.asymmetric.sign(id, scheme, hash, digest);
  }
  verify(id: Buffer, kind: KeyKind, scheme: SignScheme, hash: HashName, digest: Buffer, signature: Buffer): Promise<boolean> {
    return this.asymmetric.verify(id, kind, scheme, hash, digest, signature);
  }
  decryptOaep(id: Buffer, hash: HashName, ciphertext: Buffer): Promise<Buffer> {
    return this.asymmetric.decryptOaep(id, hash, ciphertext);
  }
  publicKeyInfo(id: Buffer, kind: KeyKind): Promise<Buffer> {
    return this.asymmetric.publicKeyInfo(id, kind);
  }
  deriveEcdh(id: Buffer, curve: keyof typeof CURVES, peerPoint: Buffer): Promise<Buffer> {
    return this.asymmetric.deriveEcdh(id, curve, peerPoint);
  }

  // ── HMAC keys (verbs/hmac.ts) ──
  generateHmacKey(id: Buffer, label: string, bytes: number): Promise<void> {
    return this.hmac.generateHmacKey(id, label, bytes);
  }
  mac(id: Buffer, hash: HashName, message: Buffer): Promise<Buffer> {
    return this.hmac.mac(id, hash, message);
  }
  verifyMac(id: Buffer, hash: HashName, message: Buffer, mac: Buffer): Promise<boolean> {
    return this.hmac.verifyMac(id, hash, message, mac);
  }

  // ── Wrapping: data key pairs and imported key material (verbs/wrap.ts) ──
  generateExportablePair(kind: KeyKind): Promise<{ privateKey: Buffer; publicKey: Buffer }> {
    return this.wrap.generateExportablePair(kind);
  }
  missingForImport(wrapping: { hash: OaepHash; aesKeyWrap: boolean }): Promise<string | undefined> {
    return this.wrap.missingForImport(wrapping);
  }
  generateRsaWrappingKeyPair(id: Buffer, label: string, modulusBits: number, rawDecrypt = false): Promise<Buffer> {
    return this.wrap.generateRsaWrappingKeyPair(id, label, modulusBits, rawDecrypt);
  }
  needsRawOaep(hash: OaepHash): Promise<boolean> {
    return this.wrap.needsRawOaep(hash);
  }
  unwrapAesKey(
    wrappingKeyId: Buffer,
    wrapping: ImportWrapping,
    blob: Buffer,
    target?: { id: Buffer; label: string; wrappable?: boolean },
  ): Promise<Buffer> {
    return this.wrap.unwrapAesKey(wrappingKeyId, wrapping, blob, target);
  }
  /** Multi-Region key material out, wrapped under a trusted peer key only (issue 13). */
  wrapWithTrusted(id: Buffer, trustedKeyId: Buffer, hash: OaepHash): Promise<{ wrapped: Buffer; check: Buffer }> {
    return this.wrap.wrapWithTrusted(id, trustedKeyId, hash);
  }

  unwrapKeyMaterial(
    wrappingKeyId: Buffer,
    wrapping: ImportWrapping,
    blob: Buffer,
    kind: ImportedKind,
    target?: { id: Buffer; label: string },
  ): Promise<Buffer> {
    return this.imports.unwrapKeyMaterial(wrappingKeyId, wrapping, blob, kind, target);
  }

  // ── Random (verbs/random.ts) ──
  random(n: number): Promise<Buffer> {
    return this.rng.random(n);
  }

  // ── Objects by id and label, audit data objects (verbs/data-objects.ts) ──
  destroy(id: Buffer): Promise<number> {
    return this.objects.destroy(id);
  }
  listObjects(labelPrefix: string): Promise<TokenObjectInfo[]> {
    return this.objects.listObjects(labelPrefix);
  }
  hasKey(id: Buffer): Promise<boolean> {
    return this.objects.hasKey(id);
  }
  readDataObjects(label: string): Promise<Buffer[]> {
    return this.objects.readDataObjects(label);
  }
  writeDataObject(label: string, value: Buffer): Promise<void> {
    return this.objects.writeDataObject(label, value);
  }
}
