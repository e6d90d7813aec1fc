import {
  CreateKeyCommand, DecryptCommand, DescribeKeyCommand, DisableKeyCommand, EncryptCommand, GenerateDataKeyCommand,
  GetPublicKeyCommand, ReEncryptCommand, SignCommand, type KeyMetadata,
} from '@aws-sdk/client-kms';
import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { hasOpenssl, openssl, spkiKey, spkiPem } from '../helpers/asymmetric.js';
import { inspectToken } from '../helpers/inspect.js';

let h: Harness;
const keys = {} as Record<Spec, KeyMetadata>;
const SPECS = ['RSA_2048', 'RSA_3072', 'RSA_4096'] as const;
type Spec = (typeof SPECS)[number];
const ALGORITHMS = ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'] as const;
type Algorithm = (typeof ALGORITHMS)[number];

/** AWS's documented limits: k - 2·hLen - 2 bytes. */
const MAX_PLAINTEXT: Record<Spec, Record<Algorithm, number>> = {
  RSA_2048: { RSAES_OAEP_SHA_1: 214, RSAES_OAEP_SHA_256: 190 },
  RSA_3072: { RSAES_OAEP_SHA_1: 342, RSAES_OAEP_SHA_256: 318 },
  RSA_4096: { RSAES_OAEP_SHA_1: 470, RSAES_OAEP_SHA_256: 446 },
};
const oaepHash = (alg: Algorithm) => (alg === 'RSAES_OAEP_SHA_1' ? 'sha1' : 'sha256');
const publicKeyOf = async (spec: Spec) => (await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec].KeyId }))).PublicKey!;

beforeAll(async () => {
  h = await startHarness();
  await Promise.all(
    SPECS.map(async (KeySpec) => {
      keys[KeySpec] = (await h.kms.send(new CreateKeyCommand({ KeySpec, KeyUsage: 'ENCRYPT_DECRYPT' }))).KeyMetadata!;
    }),
  );
}, 120_000);
afterAll(async () => {
  await h?.stop();
});

describe('RSA encryption keys', () => {
  it('DescribeKey and GetPublicKey show both OAEP algorithms; the SPKI is the right RSA key', async () => {
    for (const spec of SPECS) {
      const meta = (await h.kms.send(new DescribeKeyCommand({ KeyId: keys[spec].KeyId }))).KeyMetadata!;
      expect(meta).toMatchObject({ KeySpec: spec, KeyUsage: 'ENCRYPT_DECRYPT', EncryptionAlgorithms: [...ALGORITHMS] });
      expect(meta.SigningAlgorithms).toBeUndefined();
      const pub = await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec].KeyId }));
      expect(pub).toMatchObject({ KeySpec: spec, KeyUsage: 'ENCRYPT_DECRYPT', EncryptionAlgorithms: [...ALGORITHMS] });
      expect(pub.SigningAlgorithms).toBeUndefined();
      expect(spkiKey(pub.PublicKey!).asymmetricKeyDetails?.modulusLength).toBe(Number(spec.slice(4)));
    }
  });

  it('decrypts what node:crypto encrypted with the public key, for every size and algorithm, up to AWS limits', async () => {
    for (const spec of SPECS) {
      const key = spkiKey(await publicKeyOf(spec));
      for (const alg of ALGORITHMS) {
        for (const size of [1, 32, MAX_PLAINTEXT[spec][alg]]) {
          const plaintext = randomBytes(size);
          const ciphertext = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: oaepHash(alg) }, plaintext);
          const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: ciphertext, KeyId: keys[spec].Arn, EncryptionAlgorithm: alg }));
          expect(Buffer.from(dec.Plaintext!).equals(plaintext), `${spec} ${alg} ${size}`).toBe(true);
          expect(dec).toMatchObject({ KeyId: keys[spec].Arn, EncryptionAlgorithm: alg });
        }
      }
    }
  });

  it('Encrypt returns the bare RSA ciphertext (the modulus length), which Decrypt opens given KeyId and the algorithm', async () => {
    for (const spec of SPECS) {
      for (const alg of ALGORITHMS) {
        const plaintext = randomBytes(MAX_PLAINTEXT[spec][alg]);
        const enc = await h.kms.send(new EncryptCommand({ KeyId: keys[spec].KeyId, Plaintext: plaintext, EncryptionAlgorithm: alg }));
        expect(enc).toMatchObject({ KeyId: keys[spec].Arn, EncryptionAlgorithm: alg });
        expect(enc.CiphertextBlob!.length).toBe(Number(spec.slice(4)) / 8);
        const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: keys[spec].KeyId, EncryptionAlgorithm: alg }));
        expect(Buffer.from(dec.Plaintext!).equals(plaintext)).toBe(true);
        // OAEP is randomized.
        const again = await h.kms.send(new EncryptCommand({ KeyId: keys[spec].KeyId, Plaintext: plaintext, EncryptionAlgorithm: alg }));
        expect(Buffer.from(again.CiphertextBlob!).equals(Buffer.from(enc.CiphertextBlob!))).toBe(false);
      }
    }
  });

  it.skipIf(!hasOpenssl)('decrypts what the openssl CLI encrypted (OAEP with SHA-256 and MGF1-SHA-256)', async () => {
    const plaintext = Buffer.from('sealed by openssl pkeyutl');
    const bytes = openssl({ 'pub.pem': spkiPem(await publicKeyOf('RSA_3072')), 'in.bin': plaintext }, (d) => [
      'pkeyutl', '-encrypt', '-pubin', '-inkey', `${d}/pub.pem`, '-in', `${d}/in.bin`,
      '-pkeyopt', 'rsa_padding_mode:oaep', '-pkeyopt', 'rsa_oaep_md:sha256', '-pkeyopt', 'rsa_mgf1_md:sha256',
    ]);
    expect(bytes.length).toBe(384);
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: bytes, KeyId: keys.RSA_3072.KeyId, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
    expect(Buffer.from(dec.Plaintext!).toString()).toBe('sealed by openssl pkeyutl');
  });
});

describe('RSA encryption errors', () => {
  it('one byte over the plaintext limit is ValidationException', async () => {
    for (const spec of SPECS) {
      for (const alg of ALGORITHMS) {
        const e = await failure(
          h.kms.send(new EncryptCommand({ KeyId: keys[spec].KeyId, Plaintext: randomBytes(MAX_PLAINTEXT[spec][alg] + 1), EncryptionAlgorithm: alg })),
        );
        expect(e.name, `${spec} ${alg}`).toBe('ValidationException');
      }
    }
  });

  it('EncryptionAlgorithm is required (SYMMETRIC_DEFAULT is incompatible) on both Encrypt and Decrypt', async () => {
    const KeyId = keys.RSA_2048.KeyId;
    const enc = await h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
    for (const call of [
      h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x') })),
      h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' })),
      h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'SM2PKE' })),
      h.kms.send(new DecryptCommand({ KeyId, CiphertextBlob: enc.CiphertextBlob })),
    ]) {
      const e = await failure(call);
      expect(e.name).toBe('InvalidKeyUsageException');
      expect(e.message).toMatch(/is incompatible with key spec RSA_2048/);
    }
  });

  it('an encryption context is ValidationException (AWS does not support it with asymmetric keys)', async () => {
    const KeyId = keys.RSA_2048.KeyId;
    const e = await failure(
      h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_1', EncryptionContext: { a: 'b' } })),
    );
    expect(e.name).toBe('ValidationException');
    const enc = await h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }));
    const d = await failure(
      h.kms.send(new DecryptCommand({ KeyId, CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: 'RSAES_OAEP_SHA_1', EncryptionContext: { a: 'b' } })),
    );
    expect(d.name).toBe('ValidationException');
  });

  it('a wrong algorithm, a tampered or truncated ciphertext, another key, or no KeyId is InvalidCiphertextException', async () => {
    for (const spec of ['RSA_2048', 'RSA_4096'] as const) {
      const KeyId = keys[spec].KeyId;
      for (const alg of ALGORITHMS) {
        const other = alg === 'RSAES_OAEP_SHA_1' ? 'RSAES_OAEP_SHA_256' : 'RSAES_OAEP_SHA_1';
        const enc = await h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('secret'), EncryptionAlgorithm: alg }));
        const blob = Buffer.from(enc.CiphertextBlob!);
        const tampered = Buffer.from(blob);
        tampered[10]! ^= 0x40;
        const cases: [Buffer, string, string | undefined][] = [
          [blob, other, KeyId],
          [tampered, alg, KeyId],
          [blob.subarray(1), alg, KeyId],
          [Buffer.alloc(blob.length, 0xff), alg, KeyId], // larger than the modulus
          [Buffer.alloc(blob.length, 0), alg, KeyId],
          [blob, alg, undefined], // an RSA ciphertext names no key
        ];
        for (const [CiphertextBlob, EncryptionAlgorithm, id] of cases) {
          const e = await failure(
            h.kms.send(new DecryptCommand({ CiphertextBlob, KeyId: id, EncryptionAlgorithm: EncryptionAlgorithm as Algorithm })),
          );
          expect(e.name, `${spec} ${alg} ${EncryptionAlgorithm} ${CiphertextBlob.length} ${id ?? 'no KeyId'}`).toBe('InvalidCiphertextException');
        }
      }
    }
    // Another RSA key of a different size: the ciphertext length is wrong for it.
    const enc = await h.kms.send(new EncryptCommand({ KeyId: keys.RSA_2048.KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
    const e = await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: keys.RSA_3072.KeyId, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })));
    expect(e.name).toBe('InvalidCiphertextException');
  });

  it('an RSA encryption key cannot sign or make data keys', async () => {
    const KeyId = keys.RSA_2048.KeyId;
    const sign = await failure(h.kms.send(new SignCommand({ KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'RSASSA_PSS_SHA_256' })));
    expect(sign.name).toBe('InvalidKeyUsageException');
    expect(sign.message).toContain('key usage is ENCRYPT_DECRYPT which is not valid for Sign');
    const dk = await failure(h.kms.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256' })));
    expect(dk.name).toBe('InvalidKeyUsageException');
  });

  describe('ReEncrypt with RSA encryption keys', () => {
    const privateKeyOpen = async (spec: Spec, alg: Algorithm, ct: Uint8Array) =>
      Buffer.from((await h.kms.send(new DecryptCommand({ CiphertextBlob: ct, KeyId: keys[spec].KeyId, EncryptionAlgorithm: alg }))).Plaintext!);

    it('symmetric → RSA, for every algorithm: the result opens with the RSA key; only the source has a material id', async () => {
      const sym = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
      const secret = randomBytes(64);
      const blob = (await h.kms.send(new EncryptCommand({ KeyId: sym.KeyId, Plaintext: secret, EncryptionContext: { a: 'b' } }))).CiphertextBlob;
      for (const alg of ALGORITHMS) {
        const re = await h.kms.send(new ReEncryptCommand({
          CiphertextBlob: blob, SourceEncryptionContext: { a: 'b' }, DestinationKeyId: keys.RSA_3072.KeyId, DestinationEncryptionAlgorithm: alg,
        }));
        expect(re).toMatchObject({
          SourceKeyId: sym.Arn, KeyId: keys.RSA_3072.Arn, SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT', DestinationEncryptionAlgorithm: alg,
        });
        expect(re.SourceKeyMaterialId).toMatch(/^[0-9a-f]{64}$/);
        expect(re.DestinationKeyMaterialId).toBeUndefined();
        expect(re.CiphertextBlob!.length).toBe(384);
        expect((await privateKeyOpen('RSA_3072', alg, re.CiphertextBlob!)).equals(secret)).toBe(true);
      }
    });

    it('RSA → symmetric and RSA → RSA (across sizes and algorithms), from a ciphertext made outside the daemon', async () => {
      const sym = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
      const secret = randomBytes(100);
      const outside = publicEncrypt({ key: spkiKey(await publicKeyOf('RSA_2048')), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
      const toSym = await h.kms.send(new ReEncryptCommand({
        CiphertextBlob: outside, SourceKeyId: keys.RSA_2048.KeyId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256',
        DestinationKeyId: sym.KeyId, DestinationEncryptionContext: { purpose: 'rewrap' },
      }));
      expect(toSym).toMatchObject({ SourceKeyId: keys.RSA_2048.Arn, KeyId: sym.Arn, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
      expect(toSym.SourceKeyMaterialId).toBeUndefined();
      expect(toSym.DestinationKeyMaterialId).toMatch(/^[0-9a-f]{64}$/);
      const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: toSym.CiphertextBlob, EncryptionContext: { purpose: 'rewrap' } }));
      expect(Buffer.from(dec.Plaintext!).equals(secret)).toBe(true);

      const toRsa = await h.kms.send(new ReEncryptCommand({
        CiphertextBlob: outside, SourceKeyId: keys.RSA_2048.Arn, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256',
        DestinationKeyId: keys.RSA_4096.KeyId, DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_1',
      }));
      expect(toRsa).toMatchObject({ SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', KeyId: keys.RSA_4096.Arn });
      expect((await privateKeyOpen('RSA_4096', 'RSAES_OAEP_SHA_1', toRsa.CiphertextBlob!)).equals(secret)).toBe(true);
    });

    it("AWS's refusals: no SourceKeyId for an RSA ciphertext, wrong or missing algorithms, encryption context, too long for the destination", async () => {
      const sym = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
      const rsaCt = (await h.kms.send(new EncryptCommand({ KeyId: keys.RSA_2048.KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }))).CiphertextBlob!;
      const cases: Array<[ConstructorParameters<typeof ReEncryptCommand>[0], string]> = [
        [{ CiphertextBlob: rsaCt, DestinationKeyId: sym.KeyId }, 'InvalidCiphertextException'],
        [{ CiphertextBlob: rsaCt, SourceKeyId: keys.RSA_2048.KeyId, DestinationKeyId: sym.KeyId }, 'InvalidKeyUsageException'],
        [{ CiphertextBlob: rsaCt, SourceKeyId: keys.RSA_2048.KeyId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', DestinationKeyId: sym.KeyId }, 'InvalidCiphertextException'],
        [{ CiphertextBlob: rsaCt, SourceKeyId: keys.RSA_2048.KeyId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', SourceEncryptionContext: { a: 'b' }, DestinationKeyId: sym.KeyId }, 'ValidationException'],
        [{ CiphertextBlob: rsaCt, SourceKeyId: keys.RSA_2048.KeyId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', DestinationKeyId: keys.RSA_3072.KeyId }, 'InvalidKeyUsageException'],
        [{ CiphertextBlob: rsaCt, SourceKeyId: keys.RSA_2048.KeyId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', DestinationKeyId: keys.RSA_3072.KeyId, DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', DestinationEncryptionContext: { a: 'b' } }, 'ValidationException'],
      ];
      for (const [input, name] of cases) {
        const e = await failure(h.kms.send(new ReEncryptCommand(input)));
        expect(e.name, `${JSON.stringify(Object.keys(input))}: ${e.message}`).toBe(name);
      }
      // 4 KiB from a symmetric key does not fit RSA-OAEP: refused, after the source opened.
      const big = (await h.kms.send(new EncryptCommand({ KeyId: sym.KeyId, Plaintext: randomBytes(4096) }))).CiphertextBlob!;
      const tooLong = await failure(h.kms.send(new ReEncryptCommand({ CiphertextBlob: big, DestinationKeyId: keys.RSA_4096.KeyId, DestinationEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })));
      expect(tooLong.name).toBe('ValidationException');
      const dry = await failure(h.kms.send(new ReEncryptCommand({ CiphertextBlob: rsaCt, SourceKeyId: keys.RSA_2048.KeyId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', DestinationKeyId: sym.KeyId, DryRun: true })));
      expect(dry.name).toBe('DryRunOperationException');
    });
  });

  it('a disabled key refuses Encrypt and Decrypt; DryRun encrypts nothing', async () => {
    const k = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT_DECRYPT' }))).KeyMetadata!;
    const enc = await h.kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }));
    const dry = await failure(h.kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256', DryRun: true })));
    expect(dry.name).toBe('DryRunOperationException');
    await h.kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    for (const call of [
      h.kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })),
      h.kms.send(new DecryptCommand({ KeyId: k.KeyId, CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })),
    ]) {
      expect((await failure(call)).name).toBe('DisabledException');
    }
  });

  it('the private half is decrypt-only, sensitive and non-extractable; the public half encrypt-only', async () => {
    const objects = inspectToken(h.token);
    for (const spec of SPECS) {
      const mine = objects.filter((o) => o.label === `p11kms:${keys[spec].KeyId}:v1`);
      expect(mine.find((o) => o.cls === 'private')).toMatchObject({
        sensitive: true, extractable: false, neverExtractable: true, sign: false, decrypt: true, derive: false, unwrap: false,
        valueRead: 'CKR_ATTRIBUTE_SENSITIVE',
      });
      expect(mine.find((o) => o.cls === 'public')).toMatchObject({ encrypt: true, verify: false, wrap: false, valueRead: 'READABLE' });
    }
  });
});
