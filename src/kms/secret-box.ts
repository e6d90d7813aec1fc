import { isKmsError } from '../errors.js';
import type { Token } from '../hsm/token.js';

/**
 * Seals credential secrets under a dedicated AES-256 key kept in the token (SigV4 needs the
 * secret itself, so a hash would not do). The key is generated in the token on first use,
 * non-extractable like every key the daemon makes; its label is outside the `p11kms:` prefix
 * that start-up reconciliation owns, so reconciliation leaves it alone.
 *
 * Sealed form 0x02: version byte ‖ IV length (u8) ‖ IV ‖ sealed (token.seal(): AES-GCM
 * ciphertext ‖ tag, or AES-CBC + HMAC on tokens without GCM), with the access key id in the AAD
 * so a sealed secret cannot be moved to another access key row. Form 0x01 (12-byte IV, AES-GCM,
 * no length byte) is still read.
 */
export const CREDENTIALS_KEK_ID = Buffer.from('p11kms-internal/credentials-kek/v1', 'utf8');
export const CREDENTIALS_KEK_LABEL = 'p11kms-internal:credentials-kek:v1';
const VERSION_1 = 1;
const VERSION = 2;
const V1_IV_BYTES = 12;

const aadFor = (accessKeyId: string) => Buffer.from(`p11kms credential v1\u0000${accessKeyId}`, 'utf8');

export class SecretBox {
  private ready: Promise<void> | undefined;

  constructor(private readonly token: Token) {}

  /** Makes sure the sealing key exists in the token, generating it the first time. */
  private ensureKey(): Promise<void> {
    this.ready ??= (async () => {
      try {
        await this.token.seal(CREDENTIALS_KEK_ID, Buffer.alloc(0), Buffer.alloc(1));
      } catch (e) {
        if (!(isKmsError(e) && e.code === 'KeyUnavailableException')) throw e;
        await this.token.generateAesKey(CREDENTIALS_KEK_ID, CREDENTIALS_KEK_LABEL);
      }
    })().catch((e: unknown) => {
      this.ready = undefined;
      throw e;
    });
    return this.ready;
  }

  async seal(accessKeyId: string, secret: string): Promise<Buffer> {
    await this.ensureKey();
    const { iv, sealed } = await this.token.seal(CREDENTIALS_KEK_ID, aadFor(accessKeyId), Buffer.from(secret, 'utf8'));
    return Buffer.concat([Buffer.from([VERSION, iv.length]), iv, sealed]);
  }

  async open(accessKeyId: string, blob: Buffer): Promise<string> {
    let iv: Buffer;
    let sealed: Buffer;
    if (blob[0] === VERSION_1 && blob.length >= 1 + V1_IV_BYTES + 16) {
      iv = blob.subarray(1, 1 + V1_IV_BYTES);
      sealed = blob.subarray(1 + V1_IV_BYTES);
    } else if (blob[0] === VERSION && blob.length >= 2 && blob.length >= 2 + blob[1]! + 16) {
      iv = blob.subarray(2, 2 + blob[1]!);
      sealed = blob.subarray(2 + blob[1]!);
    } else {
      throw new Error('unknown sealed secret format');
    }
    const plain = await this.token.open(CREDENTIALS_KEK_ID, this.token.aeadShape, iv, aadFor(accessKeyId), sealed);
    try {
      return plain.toString('utf8');
    } finally {
      plain.fill(0);
    }
  }
}
