import { randomBytes } from 'node:crypto';
import { isKmsError } from '../errors.js';
import type { Token } from '../hsm/token.js';

/**
 * Seals credential secrets under a dedicated AES-256 key kept in the token (SigV4 needs the
 * secret itself, so a hash would not do). The key is generated in the token on first use,
 * non-extractable like every key the daemon makes; its label is outside the `p11kms:` prefix
 * that start-up reconciliation owns, so reconciliation leaves it alone.
 *
 * Sealed form: version byte 0x01 ‖ 12-byte IV ‖ AES-GCM ciphertext ‖ 16-byte tag, with the
 * access key id in the AAD so a sealed secret cannot be moved to another access key row.
 */
export const CREDENTIALS_KEK_ID = Buffer.from('p11kms-internal/credentials-kek/v1', 'utf8');
export const CREDENTIALS_KEK_LABEL = 'p11kms-internal:credentials-kek:v1';
const VERSION = 1;
const IV_BYTES = 12;

const aadFor = (accessKeyId: string) => Buffer.from(`p11kms credential v1\u0000${accessKeyId}`, 'utf8');

export class SecretBox {
  private ready: Promise<void> | undefined;

  constructor(private readonly token: Token) {}

  /** Makes sure the sealing key exists in the token, generating it the first time. */
  private ensureKey(): Promise<void> {
    this.ready ??= (async () => {
      try {
        await this.token.encryptGcm(CREDENTIALS_KEK_ID, randomBytes(IV_BYTES), Buffer.alloc(0), Buffer.alloc(1));
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
    const iv = randomBytes(IV_BYTES);
    const sealed = await this.token.encryptGcm(CREDENTIALS_KEK_ID, iv, aadFor(accessKeyId), Buffer.from(secret, 'utf8'));
    return Buffer.concat([Buffer.from([VERSION]), iv, sealed]);
  }

  async open(accessKeyId: string, blob: Buffer): Promise<string> {
    if (blob.length < 1 + IV_BYTES + 16 || blob[0] !== VERSION) throw new Error('unknown sealed secret format');
    const iv = blob.subarray(1, 1 + IV_BYTES);
    const plain = await this.token.decryptGcm(CREDENTIALS_KEK_ID, iv, aadFor(accessKeyId), blob.subarray(1 + IV_BYTES));
    try {
      return plain.toString('utf8');
    } finally {
      plain.fill(0);
    }
  }
}
