/**
 * Imported HMAC and RSA key material (issue #12): material made with node:crypto outside the
 * daemon, wrapped as a customer wraps it (RSAES_OAEP / RSA_AES_KEY_WRAP; PKCS#8 for RSA private
 * keys), imported into non-extractable token objects; the daemon then MACs, signs, verifies and
 * decrypts exactly as the original key does. Re-import of the same material only, deletion,
 * AWS's refusals.
 */
import {
  CreateKeyCommand, DecryptCommand, DeleteImportedKeyMaterialCommand, DescribeKeyCommand, GenerateMacCommand,
  GetParametersForImportCommand, GetPublicKeyCommand, ImportKeyMaterialCommand, SignCommand, VerifyCommand, VerifyMacCommand,
  type AlgorithmSpec, type CreateKeyCommandInput,
} from '@aws-sdk/client-kms';
import { constants, createHmac, createPublicKey, generateKeyPair, generateKeyPairSync, publicEncrypt, randomBytes, verify } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { wrapOaep, wrapRsaAes } from '../helpers/lifecycle.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

/**
 * RSA key pairs made off the event loop: the daemon runs in this process, and a multi-second
 * synchronous key generation would stall it (and let keep-alive sockets time out under the SDK).
 */
const rsaPair = (modulusLength: number) => promisify(generateKeyPair)('rsa', { modulusLength });

async function externalKey(input: CreateKeyCommandInput) {
  return (await h.kms.send(new CreateKeyCommand({ ...input, Origin: 'EXTERNAL' }))).KeyMetadata!;
}

/** GetParametersForImport, wrap outside, ImportKeyMaterial (does not expire). Returns the KeyMaterialId. */
async function importInto(KeyId: string, material: Buffer, WrappingAlgorithm: AlgorithmSpec, WrappingKeySpec: 'RSA_2048' | 'RSA_3072' | 'RSA_4096' = 'RSA_2048') {
  const p = await h.kms.send(new GetParametersForImportCommand({ KeyId, WrappingAlgorithm, WrappingKeySpec }));
  const hash = WrappingAlgorithm.endsWith('SHA_1') ? 'sha1' : 'sha256';
  const wrapped = WrappingAlgorithm.startsWith('RSA_AES') ? wrapRsaAes(p.PublicKey!, material, hash) : wrapOaep(p.PublicKey!, material, hash);
  const r = await h.kms.send(new ImportKeyMaterialCommand({
    KeyId, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapped, ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE',
  }));
  return r.KeyMaterialId!;
}

describe('imported HMAC key material', () => {
  const cases = [
    { KeySpec: 'HMAC_256', MacAlgorithm: 'HMAC_SHA_256', hash: 'sha256', bytes: 32, wrap: 'RSAES_OAEP_SHA_1' },
    { KeySpec: 'HMAC_384', MacAlgorithm: 'HMAC_SHA_384', hash: 'sha384', bytes: 100, wrap: 'RSA_AES_KEY_WRAP_SHA_1' },
    { KeySpec: 'HMAC_224', MacAlgorithm: 'HMAC_SHA_224', hash: 'sha224', bytes: 28, wrap: 'RSA_AES_KEY_WRAP_SHA_1' },
    { KeySpec: 'HMAC_512', MacAlgorithm: 'HMAC_SHA_512', hash: 'sha512', bytes: 64, wrap: 'RSAES_OAEP_SHA_1' },
  ] as const;
  for (const c of cases) {
    it(`${c.KeySpec} (${c.bytes} bytes, ${c.wrap}): the token MACs exactly as node:crypto does with the material`, async () => {
      const k = await externalKey({ KeySpec: c.KeySpec, KeyUsage: 'GENERATE_VERIFY_MAC' });
      expect(k.KeyState).toBe('PendingImport');
      const material = randomBytes(c.bytes);
      const id = await importInto(k.KeyId!, material, c.wrap);
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      const message = randomBytes(100);
      const mac = await h.kms.send(new GenerateMacCommand({ KeyId: k.KeyId, Message: message, MacAlgorithm: c.MacAlgorithm }));
      expect(Buffer.from(mac.Mac!).equals(createHmac(c.hash, material).update(message).digest())).toBe(true);
      const ok = await h.kms.send(new VerifyMacCommand({ KeyId: k.KeyId, Message: message, MacAlgorithm: c.MacAlgorithm, Mac: createHmac(c.hash, material).update(message).digest() }));
      expect(ok.MacValid).toBe(true);
    });
  }

  it('re-import of the same material only; other material is IncorrectKeyMaterialException; delete and restore', async () => {
    const k = await externalKey({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' });
    const material = randomBytes(32);
    const id = await importInto(k.KeyId!, material, 'RSAES_OAEP_SHA_1');
    expect((await failure(importInto(k.KeyId!, randomBytes(32), 'RSAES_OAEP_SHA_1'))).name).toBe('IncorrectKeyMaterialException');
    expect(await importInto(k.KeyId!, material, 'RSA_AES_KEY_WRAP_SHA_1')).toBe(id);
    await h.kms.send(new DeleteImportedKeyMaterialCommand({ KeyId: k.KeyId }));
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata?.KeyState).toBe('PendingImport');
    expect((await failure(h.kms.send(new GenerateMacCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_256' })))).name).toBe('KMSInvalidStateException');
    expect(await importInto(k.KeyId!, material, 'RSAES_OAEP_SHA_1')).toBe(id);
    const mac = await h.kms.send(new GenerateMacCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_256' }));
    expect(Buffer.from(mac.Mac!).equals(createHmac('sha256', material).update('m').digest())).toBe(true);
  });

  it('material outside AWS length range for the spec is IncorrectKeyMaterialException', async () => {
    const k = await externalKey({ KeySpec: 'HMAC_512', KeyUsage: 'GENERATE_VERIFY_MAC' });
    expect((await failure(importInto(k.KeyId!, randomBytes(16), 'RSA_AES_KEY_WRAP_SHA_1'))).name).toBe('IncorrectKeyMaterialException');
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata?.KeyState).toBe('PendingImport');
  });
});

describe('imported RSA private keys (PKCS#8 via RSA_AES_KEY_WRAP)', () => {
  it('SIGN_VERIFY: GetPublicKey is the original public key; signatures verify with node:crypto and Verify', async () => {
    const pair = await rsaPair(2048);
    const k = await externalKey({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    const pkcs8 = pair.privateKey.export({ type: 'pkcs8', format: 'der' });
    const id = await importInto(k.KeyId!, pkcs8, 'RSA_AES_KEY_WRAP_SHA_1');
    const pub = await h.kms.send(new GetPublicKeyCommand({ KeyId: k.KeyId }));
    expect(Buffer.from(pub.PublicKey!).equals(pair.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
    const message = randomBytes(64);
    for (const [SigningAlgorithm, padding] of [['RSASSA_PSS_SHA_256', constants.RSA_PKCS1_PSS_PADDING], ['RSASSA_PKCS1_V1_5_SHA_256', constants.RSA_PKCS1_PADDING]] as const) {
      const sig = await h.kms.send(new SignCommand({ KeyId: k.KeyId, Message: message, SigningAlgorithm }));
      expect(verify('sha256', message, { key: pair.publicKey, padding, saltLength: 32 }, Buffer.from(sig.Signature!)), SigningAlgorithm).toBe(true);
      const v = await h.kms.send(new VerifyCommand({ KeyId: k.KeyId, Message: message, Signature: sig.Signature, SigningAlgorithm }));
      expect(v.SignatureValid).toBe(true);
    }
    // Same material again: same id; another key's material: refused.
    expect(await importInto(k.KeyId!, pkcs8, 'RSA_AES_KEY_WRAP_SHA_1')).toBe(id);
    const other = (await rsaPair(2048)).privateKey.export({ type: 'pkcs8', format: 'der' });
    expect((await failure(importInto(k.KeyId!, other, 'RSA_AES_KEY_WRAP_SHA_1'))).name).toBe('IncorrectKeyMaterialException');
    // In the token: both halves under the version's id; the private half sensitive and non-extractable.
    const mine = inspectToken(h.token).filter((o) => o.label === `p11kms:${k.KeyId}:v1`);
    expect(mine.find((o) => o.cls === 'private')).toMatchObject({ sensitive: true, extractable: false, sign: true, decrypt: false, valueRead: 'CKR_ATTRIBUTE_SENSITIVE' });
    expect(mine.find((o) => o.cls === 'public')).toMatchObject({ verify: true, encrypt: false });
  });

  it('ENCRYPT_DECRYPT (RSA_2048, wrapping key RSA_3072): decrypts what node:crypto encrypted with the original public key', async () => {
    const pair = await rsaPair(2048);
    const k = await externalKey({ KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' });
    await importInto(k.KeyId!, pair.privateKey.export({ type: 'pkcs8', format: 'der' }), 'RSA_AES_KEY_WRAP_SHA_1', 'RSA_3072');
    const secret = randomBytes(100);
    for (const [EncryptionAlgorithm, oaepHash] of [['RSAES_OAEP_SHA_1', 'sha1'], ['RSAES_OAEP_SHA_256', 'sha256']] as const) {
      const ct = publicEncrypt({ key: pair.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, secret);
      const dec = await h.kms.send(new DecryptCommand({ KeyId: k.KeyId, CiphertextBlob: ct, EncryptionAlgorithm }));
      expect(Buffer.from(dec.Plaintext!).equals(secret)).toBe(true);
    }
    expect(createPublicKey({ key: Buffer.from((await h.kms.send(new GetPublicKeyCommand({ KeyId: k.KeyId }))).PublicKey!), format: 'der', type: 'spki' })
      .export({ format: 'jwk' })).toEqual(pair.publicKey.export({ format: 'jwk' }));
  });

  it("AWS's refusals: RSAES_OAEP cannot carry a private key; a key of the wrong size or kind is IncorrectKeyMaterialException", async () => {
    const k = await externalKey({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    const e = await failure(h.kms.send(new GetParametersForImportCommand({ KeyId: k.KeyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' })));
    expect(e.name).toBe('ValidationException');
    const rsa3072 = (await rsaPair(3072)).privateKey.export({ type: 'pkcs8', format: 'der' });
    const wrongSize = await failure(importInto(k.KeyId!, rsa3072, 'RSA_AES_KEY_WRAP_SHA_1'));
    expect(wrongSize.name).toBe('IncorrectKeyMaterialException');
    expect(wrongSize.message).toContain('RSA private key of that size');
    // An EC private key is refused by the token's RSA unwrap template itself: it cannot be told
    // apart from a damaged blob there, so it is InvalidCiphertextException.
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'der' });
    expect((await failure(importInto(k.KeyId!, ec, 'RSA_AES_KEY_WRAP_SHA_1'))).name).toBe('InvalidCiphertextException');
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata?.KeyState).toBe('PendingImport');
  });
});

describe('imported EC private keys (PKCS#8 via RSA_AES_KEY_WRAP)', () => {
  const curves = [
    ['ECC_NIST_P256', 'P-256', 'ECDSA_SHA_256', 'sha256'],
    ['ECC_NIST_P384', 'P-384', 'ECDSA_SHA_384', 'sha384'],
    ['ECC_NIST_P521', 'P-521', 'ECDSA_SHA_512', 'sha512'],
    ['ECC_SECG_P256K1', 'secp256k1', 'ECDSA_SHA_256', 'sha256'],
  ] as const;
  for (const [KeySpec, namedCurve, SigningAlgorithm, hash] of curves) {
    it(`${KeySpec}: GetPublicKey is the original public key; signatures verify with node:crypto and Verify`, async () => {
      const pair = generateKeyPairSync('ec', { namedCurve });
      const k = await externalKey({ KeySpec, KeyUsage: 'SIGN_VERIFY' });
      const pkcs8 = pair.privateKey.export({ type: 'pkcs8', format: 'der' });
      const id = await importInto(k.KeyId!, pkcs8, 'RSA_AES_KEY_WRAP_SHA_1');
      const pub = await h.kms.send(new GetPublicKeyCommand({ KeyId: k.KeyId }));
      expect(Buffer.from(pub.PublicKey!).equals(pair.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
      const message = randomBytes(50);
      const sig = await h.kms.send(new SignCommand({ KeyId: k.KeyId, Message: message, SigningAlgorithm }));
      expect(verify(hash, message, pair.publicKey, Buffer.from(sig.Signature!))).toBe(true);
      expect((await h.kms.send(new VerifyCommand({ KeyId: k.KeyId, Message: message, Signature: sig.Signature, SigningAlgorithm }))).SignatureValid).toBe(true);
      expect(await importInto(k.KeyId!, pkcs8, 'RSA_AES_KEY_WRAP_SHA_1')).toBe(id);
      const mine = inspectToken(h.token).filter((o) => o.label === `p11kms:${k.KeyId}:v1`);
      expect(mine.map((o) => o.cls).sort()).toEqual(['private', 'public']);
      expect(mine.find((o) => o.cls === 'private')).toMatchObject({ sensitive: true, extractable: false, sign: true, derive: false, valueRead: 'CKR_ATTRIBUTE_SENSITIVE' });
    });
  }

  it('a key on another curve is IncorrectKeyMaterialException; KEY_AGREEMENT imports are refused at CreateKey', async () => {
    const k = await externalKey({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'der' });
    expect((await failure(importInto(k.KeyId!, p384, 'RSA_AES_KEY_WRAP_SHA_1'))).name).toBe('IncorrectKeyMaterialException');
    const e = await failure(externalKey({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'KEY_AGREEMENT' }));
    expect(e.name).toBe('UnsupportedOperationException');
  });
});
