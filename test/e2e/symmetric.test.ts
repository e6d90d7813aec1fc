import {
  CreateKeyCommand, DecryptCommand, DescribeKeyCommand, DisableKeyCommand, EnableKeyCommand, EncryptCommand,
  GenerateDataKeyCommand, GenerateDataKeyWithoutPlaintextCommand, GenerateRandomCommand, ListKeysCommand,
  ReEncryptCommand, UpdateKeyDescriptionCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, failure, REGION, startHarness, type Harness } from '../helpers/daemon.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const newKey = async (Description = 'test key') =>
  (await h.kms.send(new CreateKeyCommand({ Description }))).KeyMetadata!;

describe('CreateKey / DescribeKey / ListKeys', () => {
  it('creates an enabled symmetric key with AWS-shaped metadata', async () => {
    const meta = await newKey('payments');
    expect(meta.KeyId).toMatch(/^[0-9a-f-]{36}$/);
    expect(meta.Arn).toBe(`arn:aws:kms:${REGION}:${ACCOUNT}:key/${meta.KeyId}`);
    expect(meta).toMatchObject({
      AWSAccountId: ACCOUNT, Enabled: true, KeyState: 'Enabled', KeyUsage: 'ENCRYPT_DECRYPT',
      KeySpec: 'SYMMETRIC_DEFAULT', Origin: 'AWS_KMS', KeyManager: 'CUSTOMER', Description: 'payments',
      EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'], MultiRegion: false,
    });
    expect(meta.CreationDate).toBeInstanceOf(Date);
    expect(Math.abs(meta.CreationDate!.getTime() - Date.now())).toBeLessThan(60_000);
    expect(meta.CurrentKeyMaterialId).toMatch(/^[0-9a-f]{64}$/);

    const byArn = await h.kms.send(new DescribeKeyCommand({ KeyId: meta.Arn }));
    expect(byArn.KeyMetadata).toEqual(meta);
  });

  it('pages through ListKeys with Limit and Marker', async () => {
    const created = new Set<string>();
    for (let i = 0; i < 5; i++) created.add((await newKey()).KeyId!);
    const seen: string[] = [];
    let Marker: string | undefined;
    let pages = 0;
    do {
      const page = await h.kms.send(new ListKeysCommand({ Limit: 2, Marker }));
      expect(page.Keys!.length).toBeLessThanOrEqual(2);
      for (const k of page.Keys!) {
        expect(k.KeyArn).toBe(`arn:aws:kms:${REGION}:${ACCOUNT}:key/${k.KeyId}`);
        seen.push(k.KeyId!);
      }
      expect(page.Truncated).toBe(page.NextMarker !== undefined);
      Marker = page.NextMarker;
      pages++;
    } while (Marker);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of created) expect(seen).toContain(id);
  });

  it('updates the description', async () => {
    const meta = await newKey('before');
    await h.kms.send(new UpdateKeyDescriptionCommand({ KeyId: meta.KeyId, Description: 'after' }));
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: meta.KeyId }))).KeyMetadata!.Description).toBe('after');
  });
});

describe('Encrypt / Decrypt', () => {
  it('round-trips with and without KeyId, returning the key ARN and material id', async () => {
    const meta = await newKey();
    const enc = await h.kms.send(new EncryptCommand({ KeyId: meta.KeyId, Plaintext: bytes('attack at dawn') }));
    expect(enc.KeyId).toBe(meta.Arn);
    expect(enc.EncryptionAlgorithm).toBe('SYMMETRIC_DEFAULT');
    expect(Buffer.from(enc.CiphertextBlob!).includes(Buffer.from('attack at dawn'))).toBe(false);
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect(text(dec.Plaintext)).toBe('attack at dawn');
    expect(dec.KeyId).toBe(meta.Arn);
    expect(dec.KeyMaterialId).toBe(meta.CurrentKeyMaterialId);
    const withKey = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: meta.Arn }));
    expect(text(withKey.Plaintext)).toBe('attack at dawn');
  });

  it('encrypts the same plaintext differently each time (fresh IV)', async () => {
    const meta = await newKey();
    const a = await h.kms.send(new EncryptCommand({ KeyId: meta.KeyId, Plaintext: bytes('same') }));
    const b = await h.kms.send(new EncryptCommand({ KeyId: meta.KeyId, Plaintext: bytes('same') }));
    expect(Buffer.from(a.CiphertextBlob!).equals(Buffer.from(b.CiphertextBlob!))).toBe(false);
  });

  it('accepts the 4096-byte maximum plaintext', async () => {
    const meta = await newKey();
    const big = Buffer.alloc(4096, 7);
    const enc = await h.kms.send(new EncryptCommand({ KeyId: meta.KeyId, Plaintext: big }));
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect(Buffer.from(dec.Plaintext!).equals(big)).toBe(true);
  });

  it('binds the encryption context: order-independent, exact, collision-free', async () => {
    const meta = await newKey();
    const enc = await h.kms.send(
      new EncryptCommand({ KeyId: meta.KeyId, Plaintext: bytes('x'), EncryptionContext: { ab: 'c', tenant: 't1' } }),
    );
    const ok = await h.kms.send(
      new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { tenant: 't1', ab: 'c' } }),
    );
    expect(text(ok.Plaintext)).toBe('x');
    const wrongContexts: (Record<string, string> | undefined)[] = [undefined, { a: 'bc', tenant: 't1' }, { ab: 'c' }, { ab: 'c', tenant: 'T1' }];
    for (const EncryptionContext of wrongContexts) {
      const e = await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext })));
      expect(e.name).toBe('InvalidCiphertextException');
      expect(e.$metadata?.httpStatusCode).toBe(400);
    }
  });

  it('rejects tampered blobs, random bytes and truncated blobs with InvalidCiphertextException', async () => {
    const meta = await newKey();
    const enc = await h.kms.send(new EncryptCommand({ KeyId: meta.KeyId, Plaintext: bytes('secret') }));
    const blob = Buffer.from(enc.CiphertextBlob!);
    const variants: Buffer[] = [];
    for (const at of [0, 5, 18, 25, blob.length - 20, blob.length - 1]) {
      const t = Buffer.from(blob);
      t[at]! ^= 0x01;
      variants.push(t);
    }
    variants.push(blob.subarray(0, blob.length - 1), blob.subarray(0, 10), Buffer.from('not a ciphertext at all, just bytes'));
    const random = Buffer.alloc(80);
    for (let i = 0; i < random.length; i++) random[i] = (i * 37 + 11) & 0xff;
    random[0] = 1;
    variants.push(random);
    for (const CiphertextBlob of variants) {
      const e = await failure(h.kms.send(new DecryptCommand({ CiphertextBlob })));
      expect(e.name).toBe('InvalidCiphertextException');
      expect(e.$metadata?.httpStatusCode).toBe(400);
    }
  });

  it('answers IncorrectKeyException when KeyId names another key', async () => {
    const a = await newKey();
    const b = await newKey();
    const enc = await h.kms.send(new EncryptCommand({ KeyId: a.KeyId, Plaintext: bytes('x') }));
    const e = await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: b.KeyId })));
    expect(e.name).toBe('IncorrectKeyException');
  });
});

describe('key state', () => {
  it('a disabled key refuses cryptographic use with DisabledException and works again when enabled', async () => {
    const meta = await newKey();
    const enc = await h.kms.send(new EncryptCommand({ KeyId: meta.KeyId, Plaintext: bytes('x') }));
    await h.kms.send(new DisableKeyCommand({ KeyId: meta.KeyId }));
    const d = (await h.kms.send(new DescribeKeyCommand({ KeyId: meta.KeyId }))).KeyMetadata!;
    expect(d).toMatchObject({ KeyState: 'Disabled', Enabled: false });
    for (const call of [
      h.kms.send(new EncryptCommand({ KeyId: meta.KeyId, Plaintext: bytes('x') })),
      h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })),
      h.kms.send(new GenerateDataKeyCommand({ KeyId: meta.KeyId, KeySpec: 'AES_256' })),
    ]) {
      const e = await failure(call);
      expect(e.name).toBe('DisabledException');
      expect(e.message).toContain(meta.Arn);
    }
    await h.kms.send(new EnableKeyCommand({ KeyId: meta.KeyId }));
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect(text(dec.Plaintext)).toBe('x');
  });
});

describe('ReEncrypt', () => {
  it('moves a ciphertext to another key and context without exposing the plaintext', async () => {
    const a = await newKey();
    const b = await newKey();
    const enc = await h.kms.send(
      new EncryptCommand({ KeyId: a.KeyId, Plaintext: bytes('move me'), EncryptionContext: { v: '1' } }),
    );
    const re = await h.kms.send(
      new ReEncryptCommand({
        CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: { v: '1' },
        DestinationKeyId: b.KeyId, DestinationEncryptionContext: { v: '2' },
      }),
    );
    expect(re).toMatchObject({
      SourceKeyId: a.Arn, KeyId: b.Arn, SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      SourceKeyMaterialId: a.CurrentKeyMaterialId, DestinationKeyMaterialId: b.CurrentKeyMaterialId,
    });
    expect('Plaintext' in re).toBe(false);
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: re.CiphertextBlob, EncryptionContext: { v: '2' } }));
    expect(text(dec.Plaintext)).toBe('move me');
    expect(dec.KeyId).toBe(b.Arn);
    const wrongSource = await failure(
      h.kms.send(new ReEncryptCommand({ CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: b.KeyId })),
    );
    expect(wrongSource.name).toBe('InvalidCiphertextException');
  });
});

describe('data keys and random bytes', () => {
  it('GenerateDataKey returns a plaintext key whose ciphertext decrypts to it', async () => {
    const meta = await newKey();
    for (const [params, len] of [[{ KeySpec: 'AES_256' as const }, 32], [{ KeySpec: 'AES_128' as const }, 16], [{ NumberOfBytes: 1 }, 1], [{ NumberOfBytes: 1024 }, 1024]] as const) {
      const dk = await h.kms.send(new GenerateDataKeyCommand({ KeyId: meta.KeyId, EncryptionContext: { purpose: 'dek' }, ...params }));
      expect(dk.Plaintext!.length).toBe(len);
      expect(dk.KeyId).toBe(meta.Arn);
      expect(dk.KeyMaterialId).toBe(meta.CurrentKeyMaterialId);
      const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: { purpose: 'dek' } }));
      expect(Buffer.from(dec.Plaintext!).equals(Buffer.from(dk.Plaintext!))).toBe(true);
    }
  });

  it('GenerateDataKeyWithoutPlaintext returns only the ciphertext', async () => {
    const meta = await newKey();
    const dk = await h.kms.send(new GenerateDataKeyWithoutPlaintextCommand({ KeyId: meta.KeyId, KeySpec: 'AES_256' }));
    expect('Plaintext' in dk).toBe(false);
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
    expect(dec.Plaintext!.length).toBe(32);
  });

  it('needs exactly one of KeySpec and NumberOfBytes', async () => {
    const meta = await newKey();
    for (const params of [{}, { KeySpec: 'AES_256' as const, NumberOfBytes: 32 }]) {
      const e = await failure(h.kms.send(new GenerateDataKeyCommand({ KeyId: meta.KeyId, ...params })));
      expect(e.name).toBe('ValidationException');
    }
  });

  it('GenerateRandom returns distinct bytes of the requested length from the token', async () => {
    const a = await h.kms.send(new GenerateRandomCommand({ NumberOfBytes: 1024 }));
    const b = await h.kms.send(new GenerateRandomCommand({ NumberOfBytes: 1024 }));
    expect(a.Plaintext!.length).toBe(1024);
    expect(Buffer.from(a.Plaintext!).equals(Buffer.from(b.Plaintext!))).toBe(false);
    for (const NumberOfBytes of [0, 1025]) {
      const e = await failure(h.kms.send(new GenerateRandomCommand({ NumberOfBytes })));
      expect(e.name).toBe('ValidationException');
    }
  });
});
