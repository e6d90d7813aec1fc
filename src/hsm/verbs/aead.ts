import pkcs11js from 'pkcs11js';
import { ckrOf, isSessionLost, isStaleHandle } from '../ckr.js';
import { failedPhase } from '../executor.js';
import { AuthenticationFailed, type TokenCore } from '../session-core.js';

const GCM_TAG_BYTES = 16;

/**
 * Authenticated encryption with token AES keys: key generation and AES-GCM, on the worker
 * threads (executor.ts) when the token has them. Every way a module handles the GCM IV is
 * decided here.
 */
export class AeadVerbs {
  constructor(private readonly core: TokenCore) {}

  /** Generates a non-extractable AES-256 key inside the token. */
  async generateAesKey(id: Buffer, label: string): Promise<void> {
    await this.core.run(async (s) => {
      const h = await this.core.p.C_GenerateKeyAsync(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, this.core.templates.secretKey(id, label));
      this.core.handles.set(id.toString('hex'), h);
    }, 'CKM_AES_KEY_GEN', 'generate');
  }

  private gcm(iv: Buffer, aad: Buffer): pkcs11js.Mechanism {
    return {
      mechanism: pkcs11js.CKM_AES_GCM,
      parameter: {
        type: pkcs11js.CK_PARAMS_AES_GCM,
        iv,
        aad,
        ivBits: iv.length * 8,
        tagBits: GCM_TAG_BYTES * 8,
      } as pkcs11js.AesGCM,
    };
  }

  /** AES-GCM inside the token; returns ciphertext followed by the 16-byte tag. */
  encryptGcm(id: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Promise<Buffer> {
    return this.core.run((s) => {
      if (this.core.exec) return this.core.exec.gcm('gcm-encrypt', s, this.core.handleFor(s, id), iv, aad, plaintext);
      this.core.p.C_EncryptInit(s, this.gcm(iv, aad), this.core.handleFor(s, id));
      return this.core.p.C_EncryptAsync(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
    }, 'CKM_AES_GCM', 'encrypt');
  }

  /** Inverse of encryptGcm; throws AuthenticationFailed when the tag does not verify. */
  decryptGcm(id: Buffer, iv: Buffer, aad: Buffer, ciphertextAndTag: Buffer): Promise<Buffer> {
    return this.core.run(async (s) => {
      const key = this.core.handleFor(s, id);
      if (!this.core.exec) this.core.p.C_DecryptInit(s, this.gcm(iv, aad), key);
      try {
        if (this.core.exec) return await this.core.exec.gcm('gcm-decrypt', s, key, iv, aad, ciphertextAndTag);
        return await this.core.p.C_DecryptAsync(s, ciphertextAndTag, Buffer.alloc(ciphertextAndTag.length));
      } catch (e) {
        const inDecrypt = failedPhase(e) === undefined || failedPhase(e) === 'op';
        if (inDecrypt && ckrOf(e) !== undefined && !isSessionLost(e) && !isStaleHandle(e)) throw new AuthenticationFailed();
        throw e;
      }
    }, 'CKM_AES_GCM', 'decrypt');
  }
}
