/**
 * OAEP with SHA-256 for imports on a token that lacks it (SoftHSM2 2.6.1: CKM_RSA_PKCS_OAEP with
 * SHA-1 only): raw RSA in the token, OAEP decoding in the daemon, the decoded bytes straight into
 * a token object. Allowed where the capabilities say the module is an in-process software token,
 * or where the operator opted in (daemonOaepDecode); refused elsewhere (import.test.ts covers the
 * refusal with the default capabilities).
 */
import {
  CreateKeyCommand, DecryptCommand, EncryptCommand, GenerateMacCommand, GetParametersForImportCommand, ImportKeyMaterialCommand,
  SignCommand, type AlgorithmSpec, type CreateKeyCommandInput,
} from '@aws-sdk/client-kms';
import { createHmac, generateKeyPair, randomBytes, verify } from 'node:crypto';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, ManualClock, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { openLocally, restart, syncClock, wrapOaep, wrapRsaAes } from '../helpers/lifecycle.js';

const clock = new ManualClock();
let h: Harness;
const configWith = (dir: string, name: string, capabilities: Record<string, boolean>) => {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ hsm: { capabilities } }));
  return file;
};
beforeAll(async () => {
  h = await startHarness({ clock, prepare: (t) => ({ P11KMS_CONFIG: configWith(t.dir, 'software', { softwareToken: true }) }) });
  syncClock(h, clock);
});
afterAll(async () => {
  await h?.stop();
});

async function importInto(input: CreateKeyCommandInput, material: Buffer, WrappingAlgorithm: AlgorithmSpec) {
  const key = (await h.kms.send(new CreateKeyCommand({ ...input, Origin: 'EXTERNAL' }))).KeyMetadata!;
  const p = await h.kms.send(new GetParametersForImportCommand({ KeyId: key.KeyId, WrappingAlgorithm, WrappingKeySpec: 'RSA_2048' }));
  const wrapped = WrappingAlgorithm.startsWith('RSA_AES') ? wrapRsaAes(p.PublicKey!, material, 'sha256') : wrapOaep(p.PublicKey!, material, 'sha256');
  await h.kms.send(new ImportKeyMaterialCommand({
    KeyId: key.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
  }));
  return { key, wrapped, importToken: p.ImportToken! };
}

describe('RSAES_OAEP_SHA_256 and RSA_AES_KEY_WRAP_SHA_256 on an in-process software token', () => {
  for (const alg of ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const) {
    it(`${alg}: symmetric material lands in the token exactly`, async () => {
      const material = randomBytes(32);
      const { key } = await importInto({}, material, alg);
      const enc = await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from(alg) }));
      expect(openLocally(material, enc.CiphertextBlob!).toString()).toBe(alg);
      const obj = inspectToken(h.token).find((o) => o.label === `p11kms:${key.KeyId}:v1`)!;
      expect(obj).toMatchObject({ sensitive: true, extractable: false, valueRead: 'CKR_ATTRIBUTE_SENSITIVE' });
    });
  }

  it('HMAC material through RSAES_OAEP_SHA_256 MACs as node:crypto does', async () => {
    const material = randomBytes(48);
    const { key } = await importInto({ KeySpec: 'HMAC_384', KeyUsage: 'GENERATE_VERIFY_MAC' }, material, 'RSAES_OAEP_SHA_256');
    const mac = await h.kms.send(new GenerateMacCommand({ KeyId: key.KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_384' }));
    expect(Buffer.from(mac.Mac!).equals(createHmac('sha384', material).update('m').digest())).toBe(true);
  });

  it('an RSA private key through RSA_AES_KEY_WRAP_SHA_256 signs as the original', async () => {
    const pair = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
    const { key } = await importInto({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' }, pair.privateKey.export({ type: 'pkcs8', format: 'der' }), 'RSA_AES_KEY_WRAP_SHA_256');
    const sig = await h.kms.send(new SignCommand({ KeyId: key.KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256' }));
    expect(verify('sha256', Buffer.from('m'), pair.publicKey, Buffer.from(sig.Signature!))).toBe(true);
  });

  it('a damaged OAEP block is InvalidCiphertextException and leaves the key pending import', async () => {
    const key = (await h.kms.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!;
    const p = await h.kms.send(new GetParametersForImportCommand({ KeyId: key.KeyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_256', WrappingKeySpec: 'RSA_2048' }));
    const wrapped = wrapOaep(p.PublicKey!, randomBytes(32), 'sha1'); // the wrong hash: OAEP decoding fails
    const e = await failure(h.kms.send(new ImportKeyMaterialCommand({
      KeyId: key.KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
    })));
    expect(e.name).toBe('InvalidCiphertextException');
    await expect(h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('x') }))).rejects.toThrow(/pending import/);
  });

  it('the operator opt-in (daemonOaepDecode) takes the same path; without either capability it is refused', async () => {
    h = await restart(h, clock, { P11KMS_CONFIG: configWith(h.token.dir, 'opt-in', { daemonOaepDecode: true }) });
    const material = randomBytes(32);
    const { key } = await importInto({}, material, 'RSAES_OAEP_SHA_256');
    const enc = await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('opt-in') }));
    expect(Buffer.from((await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }))).Plaintext!).toString()).toBe('opt-in');
    h = await restart(h, clock, { P11KMS_CONFIG: configWith(h.token.dir, 'hardware', {}) });
    const other = (await h.kms.send(new CreateKeyCommand({ Origin: 'EXTERNAL' }))).KeyMetadata!;
    const e = await failure(h.kms.send(new GetParametersForImportCommand({ KeyId: other.KeyId, WrappingAlgorithm: 'RSA_AES_KEY_WRAP_SHA_256', WrappingKeySpec: 'RSA_2048' })));
    expect(e.name).toBe('UnsupportedOperationException');
    expect(e.message).toContain('CKM_RSA_PKCS_OAEP with SHA-256 and MGF1-SHA-256');
  });
});
