import pkcs11js from 'pkcs11js';
import { Errors } from '../../errors.js';
import { ckrName, ckrOf, isSessionLost, isStaleHandle } from '../ckr.js';
import { failedPhase } from '../executor.js';
import { randomBytesFromPool } from '../random-pool.js';
import type { AeadScheme } from '../profile.js';
import { AuthenticationFailed, type Handle, type TokenCore } from '../session-core.js';
import { CbcHmac } from './aead-cbc-hmac.js';
import type { Sealed } from './sealed.js';

const GCM_TAG_BYTES = 16;

/** What a sealed value is: the scheme and the length of its IV (the ciphertext format records both). */
export interface AeadShape {
  scheme: AeadScheme;
  ivBytes: number;
}

export type { Sealed } from './sealed.js';

/**
 * Authenticated encryption under token AES keys: key generation, seal and open. Every way a
 * module handles the AES-GCM IV is here (profile `gcmIv`):
 *
 * - 'caller': the daemon draws a 12-byte IV and passes it in CK_GCM_PARAMS (SoftHSM2, NSS).
 * - 'token-generated': pIv points to a zero-filled buffer of gcmIvBytes, and the module writes
 *   its IV there (CloudHSM SDK 5 and nShield with CKM_AES_GCM; kmsp11's CKM_CLOUDKMS_AES_GCM
 *   writes it at C_Encrypt time). pkcs11js passes the Buffer's own memory as pIv, so the write
 *   shows in the JS Buffer; the Buffer stays referenced (this closure) until C_Encrypt returns.
 * - 'token-appended': ulIvLen 0 and ulIvBits = 8 × gcmIvBytes; the module appends its IV after
 *   the tag (Luna in FIPS mode: 16 bytes, or 12 when ulIvBits says 96 from firmware 7.9.3).
 * - 'token-prepended': a vendor mechanism with pIv NULL (a zero-length Buffer) returns
 *   IV ‖ ciphertext ‖ tag and takes the same on decrypt (CKM_CLOUDHSM_AES_GCM).
 *
 * ulIvBits is always set (CK_PARAMS_GCM; pkcs11js's CK_PARAMS_AES_GCM leaves it uninitialised).
 * Decrypt gives the IV back in pIv for every mode but 'token-prepended'. A module that claims
 * to make the IV but leaves the buffer zero, or returns the wrong length, is a token fault: the
 * daemon never stores a ciphertext whose IV it does not know.
 *
 * Tokens without GCM use AES-CBC + HMAC-SHA-256 in the token (aead-cbc-hmac.ts).
 */
export class AeadVerbs {
  private readonly cbcHmac: CbcHmac;

  constructor(private readonly core: TokenCore) {
    this.cbcHmac = new CbcHmac(core);
  }

  /** The scheme and IV length of what seal() returns, known before sealing (the header names it). */
  get shape(): AeadShape {
    const { caps } = this.core.profile;
    if (caps.aead === 'aes-cbc-hmac-sha256') return { scheme: caps.aead, ivBytes: CbcHmac.IV_BYTES };
    return { scheme: 'aes-gcm', ivBytes: caps.gcmIvBytes };
  }

  /**
   * Generates the token key(s) of one symmetric key: AES-256, plus its HMAC key for AES-CBC +
   * HMAC. `wrappable` (Multi-Region keys): wrappable only by a trusted key (templates.ts); the
   * AES-CBC + HMAC scheme keeps its keys non-extractable (such a key cannot move between tokens).
   */
  async generateAesKey(id: Buffer, label: string, wrappable = false): Promise<void> {
    if (this.core.profile.caps.aead === 'aes-cbc-hmac-sha256') return this.cbcHmac.generate(id, label);
    await this.core.run(async (s) => {
      const h = await this.core.p.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, this.core.templates.secretKey(id, label, wrappable));
      this.core.handles.set(id.toString('hex'), h);
    }, 'CKM_AES_KEY_GEN', 'generate');
  }

  /** Seals `plaintext` with `aad` authenticated; the IV comes back with the ciphertext. */
  seal(id: Buffer, aad: Buffer, plaintext: Buffer): Promise<Sealed> {
    if (this.core.profile.caps.aead === 'aes-cbc-hmac-sha256') return this.cbcHmac.seal(id, aad, plaintext);
    const mode = this.core.profile.caps.gcmIv;
    if (mode === 'caller') return this.sealWithIv(id, randomBytesFromPool(12), aad, plaintext);
    return this.core.run(async (s) => {
      const out = await this.gcmEncrypt(s, id, aad, plaintext);
      return out;
    }, 'CKM_AES_GCM', 'encrypt');
  }

  /**
   * AES-GCM with an IV the caller chose (ciphertext ‖ tag). Only for tokens whose profile lets
   * the caller choose ('caller'); others refuse, so no caller stores an IV the token never used.
   */
  sealWithIv(id: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Sealed> {
    const { caps } = this.core.profile;
    if (caps.aead !== 'aes-gcm' || caps.gcmIv !== 'caller') {
      return Promise.reject(Errors.internal(`Token '${this.core.opts.tokenLabel}' chooses its own IVs; the daemon cannot supply one.`));
    }
    return this.core.run(async (s) => {
      const key = this.core.handleFor(s, id);
      if (this.useWorkers()) return { iv, sealed: await this.core.exec!.gcm('gcm-encrypt', s, key, iv, aad, plaintext) };
      this.core.p.C_EncryptInit(s, this.gcm(iv, iv.length, aad), key);
      return { iv, sealed: await this.core.p.C_EncryptAsync(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES)) };
    }, 'CKM_AES_GCM', 'encrypt');
  }

  /** Opens what seal() returned; throws AuthenticationFailed when it does not authenticate. */
  open(id: Buffer, shape: AeadShape, iv: Buffer, aad: Buffer, sealed: Buffer): Promise<Buffer> {
    const mine = this.shape;
    if (shape.scheme !== mine.scheme) return Promise.reject(new AuthenticationFailed());
    if (mine.scheme === 'aes-cbc-hmac-sha256') return this.cbcHmac.open(id, iv, aad, sealed);
    if (sealed.length < GCM_TAG_BYTES) return Promise.reject(new AuthenticationFailed());
    return this.core.run(async (s) => {
      const key = this.core.handleFor(s, id);
      try {
        if (this.useWorkers()) return await this.core.exec!.gcm('gcm-decrypt', s, key, iv, aad, sealed);
        if (this.core.profile.caps.gcmIv === 'token-prepended') {
          this.core.p.C_DecryptInit(s, this.gcm(Buffer.alloc(0), 0, aad), key);
          const input = Buffer.concat([iv, sealed]);
          return await this.core.p.C_DecryptAsync(s, input, Buffer.alloc(input.length));
        }
        this.core.p.C_DecryptInit(s, this.gcm(iv, iv.length, aad), key);
        return await this.core.p.C_DecryptAsync(s, sealed, Buffer.alloc(sealed.length));
      } catch (e) {
        throw this.decryptFailed(e);
      }
    }, 'CKM_AES_GCM', 'decrypt');
  }

  /** The profile's decrypt-failure codes mean "does not authenticate"; anything else is a token fault. */
  private decryptFailed(e: unknown): unknown {
    const phase = failedPhase(e);
    const code = ckrOf(e);
    if (code === undefined || isSessionLost(e) || isStaleHandle(e) || phase === 'init') return e;
    if (this.core.profile.decryptFailure.has(code)) return new AuthenticationFailed();
    this.core.log.warn({ token: this.core.opts.tokenLabel, ckr: ckrName(code) }, 'decrypt failed with a code the profile does not list as an authentication failure');
    return e;
  }

  /** The caller-IV GCM path runs on the worker threads when the token has them (standard CKM_AES_GCM only). */
  private useWorkers(): boolean {
    return this.core.exec !== undefined && this.core.profile.gcmMechanism === pkcs11js.CKM_AES_GCM;
  }

  /** CK_GCM_PARAMS for the profile's mechanism, ulIvBits always set. */
  private gcm(iv: Buffer, ivBytesForBits: number, aad: Buffer): pkcs11js.Mechanism {
    return {
      mechanism: this.core.profile.gcmMechanism,
      parameter: {
        type: pkcs11js.CK_PARAMS_GCM,
        iv,
        aad,
        ivBits: ivBytesForBits * 8,
        tagBits: GCM_TAG_BYTES * 8,
      } as pkcs11js.AesGCM,
    };
  }

  /** Encrypt where the token chooses the IV: 'token-generated', 'token-appended', 'token-prepended'. */
  private async gcmEncrypt(s: Handle, id: Buffer, aad: Buffer, plaintext: Buffer): Promise<Sealed> {
    const { gcmIv: mode, gcmIvBytes: ivBytes } = this.core.profile.caps;
    const key = this.core.handleFor(s, id);
    const label = this.core.opts.tokenLabel;
    if (mode === 'token-generated') {
      const iv = Buffer.alloc(ivBytes); // zero-filled: the module refuses anything else, then overwrites it
      this.core.p.C_EncryptInit(s, this.gcm(iv, ivBytes, aad), key);
      const sealed = await this.core.p.C_EncryptAsync(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
      // `iv` is still referenced here: the module wrote into its memory during C_EncryptInit or C_Encrypt.
      if (iv.every((b) => b === 0)) throw Errors.internal(`Token '${label}' did not return the IV it generated (pIv still zero).`);
      if (sealed.length !== plaintext.length + GCM_TAG_BYTES) throw outputLength(label, sealed.length);
      return { iv, sealed };
    }
    if (mode === 'token-appended') {
      this.core.p.C_EncryptInit(s, this.gcm(Buffer.alloc(0), ivBytes, aad), key);
      const out = await this.core.p.C_EncryptAsync(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES + ivBytes));
      if (out.length !== plaintext.length + GCM_TAG_BYTES + ivBytes) throw outputLength(label, out.length);
      return { iv: Buffer.from(out.subarray(out.length - ivBytes)), sealed: out.subarray(0, out.length - ivBytes) };
    }
    // 'token-prepended'
    this.core.p.C_EncryptInit(s, this.gcm(Buffer.alloc(0), 0, aad), key);
    const out = await this.core.p.C_EncryptAsync(s, plaintext, Buffer.alloc(ivBytes + plaintext.length + GCM_TAG_BYTES));
    if (out.length !== ivBytes + plaintext.length + GCM_TAG_BYTES) throw outputLength(label, out.length);
    return { iv: Buffer.from(out.subarray(0, ivBytes)), sealed: out.subarray(ivBytes) };
  }
}

const outputLength = (label: string, length: number) =>
  Errors.internal(`Token '${label}' returned ${length} bytes of GCM output, not what its profile's IV mode gives.`);
