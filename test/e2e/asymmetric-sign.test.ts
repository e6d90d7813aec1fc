import {
  CreateKeyCommand, DescribeKeyCommand, DisableKeyCommand, EnableKeyCommand, EncryptCommand, GenerateDataKeyCommand,
  GetPublicKeyCommand, ListKeysCommand, SignCommand, VerifyCommand, type KeyMetadata, type KeySpec, type SigningAlgorithmSpec,
} from '@aws-sdk/client-kms';
import { constants, createHash, randomBytes, verify as nodeVerify } from 'node:crypto';
import { importSPKI, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { b64url, derToP1363, hasOpenssl, openssl, spkiKey, spkiPem } from '../helpers/asymmetric.js';
import { inspectToken } from '../helpers/inspect.js';

let h: Harness;
const keys = {} as Record<string, KeyMetadata>;

const SIGNING_SPECS = {
  RSA_2048: [
    'RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_384', 'RSASSA_PKCS1_V1_5_SHA_512',
    'RSASSA_PSS_SHA_256', 'RSASSA_PSS_SHA_384', 'RSASSA_PSS_SHA_512',
  ],
  RSA_3072: [
    'RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_384', 'RSASSA_PKCS1_V1_5_SHA_512',
    'RSASSA_PSS_SHA_256', 'RSASSA_PSS_SHA_384', 'RSASSA_PSS_SHA_512',
  ],
  RSA_4096: [
    'RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PKCS1_V1_5_SHA_384', 'RSASSA_PKCS1_V1_5_SHA_512',
    'RSASSA_PSS_SHA_256', 'RSASSA_PSS_SHA_384', 'RSASSA_PSS_SHA_512',
  ],
  ECC_NIST_P256: ['ECDSA_SHA_256'],
  ECC_NIST_P384: ['ECDSA_SHA_384'],
  ECC_NIST_P521: ['ECDSA_SHA_512'],
  ECC_SECG_P256K1: ['ECDSA_SHA_256'],
} as const satisfies Partial<Record<KeySpec, SigningAlgorithmSpec[]>>;
type Spec = keyof typeof SIGNING_SPECS;
const SPECS = Object.keys(SIGNING_SPECS) as Spec[];

const hashOf = (alg: string) => `sha${alg.slice(-3)}`;
const CURVE_BYTES: Record<string, number> = { ECC_NIST_P256: 32, ECC_NIST_P384: 48, ECC_NIST_P521: 66, ECC_SECG_P256K1: 32 };
const CURVE_NAMES: Record<string, string> = {
  ECC_NIST_P256: 'prime256v1', ECC_NIST_P384: 'secp384r1', ECC_NIST_P521: 'secp521r1', ECC_SECG_P256K1: 'secp256k1',
};

/** Verifies outside the daemon, with node:crypto and the public key from GetPublicKey. */
function nodeVerifies(spec: Spec, alg: string, publicKey: Uint8Array, message: Buffer, signature: Uint8Array): boolean {
  const key = spkiKey(publicKey);
  const hash = hashOf(alg);
  if (alg.startsWith('RSASSA_PSS')) {
    return nodeVerify(hash, message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(hash.slice(3)) / 8 }, signature);
  }
  if (alg.startsWith('RSASSA_PKCS1')) return nodeVerify(hash, message, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
  expect(spec.startsWith('ECC')).toBe(true);
  return nodeVerify(hash, message, { key, dsaEncoding: 'der' }, signature);
}

beforeAll(async () => {
  h = await startHarness();
  // Generated concurrently: each key pair is one C_GenerateKeyPair on its own pooled session.
  await Promise.all(
    SPECS.map(async (KeySpec) => {
      keys[KeySpec] = (await h.kms.send(new CreateKeyCommand({ KeySpec, KeyUsage: 'SIGN_VERIFY', Description: KeySpec }))).KeyMetadata!;
    }),
  );
}, 120_000);
afterAll(async () => {
  await h?.stop();
});

describe('CreateKey and DescribeKey for signing keys', () => {
  it('shows each spec with exactly its signing algorithms and no other algorithm list', async () => {
    for (const spec of SPECS) {
      const meta = (await h.kms.send(new DescribeKeyCommand({ KeyId: keys[spec]!.KeyId }))).KeyMetadata!;
      expect(meta).toEqual(keys[spec]);
      expect(meta).toMatchObject({
        KeySpec: spec, CustomerMasterKeySpec: spec, KeyUsage: 'SIGN_VERIFY', KeyState: 'Enabled', Enabled: true, Origin: 'AWS_KMS',
      });
      expect(meta.SigningAlgorithms).toEqual(SIGNING_SPECS[spec]);
      expect(meta.EncryptionAlgorithms).toBeUndefined();
      expect(meta.KeyAgreementAlgorithms).toBeUndefined();
      expect(meta.MacAlgorithms).toBeUndefined();
      expect(meta.CurrentKeyMaterialId).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('refuses key specs the token cannot do with UnsupportedOperationException naming the missing mechanism, and creates nothing', async () => {
    const before = (await h.kms.send(new ListKeysCommand({ Limit: 1000 }))).Keys!.length;
    const cases: [KeySpec, 'SIGN_VERIFY' | 'ENCRYPT_DECRYPT', RegExp][] = [
      ['SM2', 'SIGN_VERIFY', /SM2 key-pair generation mechanism/],
      ['ML_DSA_44', 'SIGN_VERIFY', /CKM_ML_DSA_KEY_PAIR_GEN and CKM_ML_DSA/],
      ['ML_DSA_65', 'SIGN_VERIFY', /CKM_ML_DSA_KEY_PAIR_GEN and CKM_ML_DSA/],
      ['ML_DSA_87', 'SIGN_VERIFY', /CKM_ML_DSA_KEY_PAIR_GEN and CKM_ML_DSA/],
      // SoftHSM2 2.6.1 lists CKM_EC_EDWARDS_KEY_PAIR_GEN and CKM_EDDSA; p11kms does not implement EdDSA yet.
      ['ECC_NIST_EDWARDS25519', 'SIGN_VERIFY', /ECC_NIST_EDWARDS25519 .*(CKM_EC_EDWARDS_KEY_PAIR_GEN|EdDSA)/],
    ];
    for (const [KeySpec, KeyUsage, message] of cases) {
      const e = await failure(h.kms.send(new CreateKeyCommand({ KeySpec, KeyUsage })));
      expect(e.name, KeySpec).toBe('UnsupportedOperationException');
      expect(e.message).toMatch(message);
    }
    expect((await h.kms.send(new ListKeysCommand({ Limit: 1000 }))).Keys!.length).toBe(before);
  });

  it('refuses KeySpec/KeyUsage combinations AWS refuses with ValidationException', async () => {
    const cases: [KeySpec, 'SIGN_VERIFY' | 'ENCRYPT_DECRYPT' | 'KEY_AGREEMENT' | 'GENERATE_VERIFY_MAC' | undefined][] = [
      ['ECC_NIST_P256', 'ENCRYPT_DECRYPT'],
      ['ECC_NIST_P256', undefined], // KeyUsage defaults to ENCRYPT_DECRYPT, which ECC keys cannot do
      ['ECC_SECG_P256K1', 'KEY_AGREEMENT'],
      ['RSA_2048', 'KEY_AGREEMENT'],
      ['RSA_2048', 'GENERATE_VERIFY_MAC'],
      ['HMAC_256', 'SIGN_VERIFY'],
      ['SYMMETRIC_DEFAULT', 'GENERATE_VERIFY_MAC'],
    ];
    for (const [KeySpec, KeyUsage] of cases) {
      const e = await failure(h.kms.send(new CreateKeyCommand({ KeySpec, KeyUsage })));
      expect(e.name, `${KeySpec} ${KeyUsage}`).toBe('ValidationException');
    }
  });
});

describe('GetPublicKey', () => {
  it('returns a DER SubjectPublicKeyInfo node:crypto parses, with the key spec, usage and signing algorithms', async () => {
    for (const spec of SPECS) {
      const pub = await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec]!.Arn }));
      expect(pub).toMatchObject({
        KeyId: keys[spec]!.Arn, KeySpec: spec, CustomerMasterKeySpec: spec, KeyUsage: 'SIGN_VERIFY',
        SigningAlgorithms: SIGNING_SPECS[spec],
      });
      expect(pub.EncryptionAlgorithms).toBeUndefined();
      const key = spkiKey(pub.PublicKey!);
      if (spec.startsWith('RSA')) {
        expect(key.asymmetricKeyType).toBe('rsa');
        expect(key.asymmetricKeyDetails).toMatchObject({ modulusLength: Number(spec.slice(4)), publicExponent: 65537n });
      } else {
        expect(key.asymmetricKeyType).toBe('ec');
        expect(key.asymmetricKeyDetails?.namedCurve).toBe(CURVE_NAMES[spec]);
      }
      // The same bytes every time (no re-encoding drift).
      const again = await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec]!.KeyId }));
      expect(Buffer.from(again.PublicKey!).equals(Buffer.from(pub.PublicKey!))).toBe(true);
    }
  });

  it('is refused for a symmetric key with UnsupportedOperationException', async () => {
    const sym = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const e = await failure(h.kms.send(new GetPublicKeyCommand({ KeyId: sym.KeyId })));
    expect(e.name).toBe('UnsupportedOperationException');
  });
});

describe('Sign: every spec and algorithm, verified outside the daemon', () => {
  it('RAW and DIGEST signatures verify with node:crypto and with Verify (either message type)', async () => {
    for (const spec of SPECS) {
      const publicKey = (await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec]!.KeyId }))).PublicKey!;
      for (const alg of SIGNING_SPECS[spec]) {
        const message = randomBytes(300);
        const digest = createHash(hashOf(alg)).update(message).digest();
        const raw = await h.kms.send(new SignCommand({ KeyId: keys[spec]!.KeyId, Message: message, SigningAlgorithm: alg }));
        expect(raw).toMatchObject({ KeyId: keys[spec]!.Arn, SigningAlgorithm: alg });
        const pre = await h.kms.send(
          new SignCommand({ KeyId: keys[spec]!.Arn, Message: digest, MessageType: 'DIGEST', SigningAlgorithm: alg }),
        );
        for (const sig of [raw.Signature!, pre.Signature!]) {
          expect(nodeVerifies(spec, alg, publicKey, message, sig), `${spec} ${alg}`).toBe(true);
          if (spec.startsWith('RSA')) expect(sig.length).toBe(Number(spec.slice(4)) / 8);
          for (const [Message, MessageType] of [[message, 'RAW'], [digest, 'DIGEST']] as const) {
            const v = await h.kms.send(
              new VerifyCommand({ KeyId: keys[spec]!.KeyId, Message, MessageType, Signature: sig, SigningAlgorithm: alg }),
            );
            expect(v).toMatchObject({ KeyId: keys[spec]!.Arn, SignatureValid: true, SigningAlgorithm: alg });
          }
        }
        if (alg.startsWith('RSASSA_PKCS1')) expect(Buffer.from(raw.Signature!).equals(Buffer.from(pre.Signature!))).toBe(true);
      }
    }
  });

  it('ECDSA signatures are DER SEQUENCE { r, s } (as AWS returns them), not r‖s', async () => {
    for (const spec of ['ECC_NIST_P256', 'ECC_NIST_P384', 'ECC_NIST_P521', 'ECC_SECG_P256K1'] as const) {
      const alg = SIGNING_SPECS[spec][0];
      for (let i = 0; i < 4; i++) {
        const sig = Buffer.from(
          (await h.kms.send(new SignCommand({ KeyId: keys[spec]!.KeyId, Message: randomBytes(32), SigningAlgorithm: alg }))).Signature!,
        );
        expect(sig[0]).toBe(0x30);
        expect(sig.length).not.toBe(2 * CURVE_BYTES[spec]!);
        expect(derToP1363(sig, CURVE_BYTES[spec]!).length).toBe(2 * CURVE_BYTES[spec]!);
      }
    }
  });

  it('signs the 4096-byte maximum RAW message', async () => {
    const message = randomBytes(4096);
    const sig = await h.kms.send(new SignCommand({ KeyId: keys.ECC_NIST_P256!.KeyId, Message: message, SigningAlgorithm: 'ECDSA_SHA_256' }));
    const publicKey = (await h.kms.send(new GetPublicKeyCommand({ KeyId: keys.ECC_NIST_P256!.KeyId }))).PublicKey!;
    expect(nodeVerifies('ECC_NIST_P256', 'ECDSA_SHA_256', publicKey, message, sig.Signature!)).toBe(true);
  });

  it.skipIf(!hasOpenssl)('signatures verify with the openssl CLI (RSA PKCS#1 v1.5 and PSS, NIST P-384 and secp256k1 ECDSA)', async () => {
    const cases: [Spec, string, string[]][] = [
      ['RSA_2048', 'RSASSA_PKCS1_V1_5_SHA_256', []],
      ['RSA_3072', 'RSASSA_PSS_SHA_384', ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:48']],
      ['ECC_NIST_P384', 'ECDSA_SHA_384', []],
      ['ECC_SECG_P256K1', 'ECDSA_SHA_256', []],
    ];
    for (const [spec, alg, opts] of cases) {
      const message = Buffer.from(`signed by p11kms with ${spec} ${alg}`);
      const pub = (await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec]!.KeyId }))).PublicKey!;
      const sig = (await h.kms.send(new SignCommand({ KeyId: keys[spec]!.KeyId, Message: message, SigningAlgorithm: alg as SigningAlgorithmSpec }))).Signature!;
      const out = openssl({ 'pub.pem': spkiPem(pub), 'msg.bin': message, 'sig.bin': sig }, (d) => [
        'dgst', `-${hashOf(alg)}`, '-verify', `${d}/pub.pem`, ...opts, '-signature', `${d}/sig.bin`, `${d}/msg.bin`,
      ]);
      expect(out.toString().trim(), `${spec} ${alg}`).toBe('Verified OK');
      // And openssl refuses a signature over another message.
      expect(() =>
        openssl({ 'pub.pem': spkiPem(pub), 'msg.bin': Buffer.concat([message, Buffer.from('!')]), 'sig.bin': sig }, (d) => [
          'dgst', `-${hashOf(alg)}`, '-verify', `${d}/pub.pem`, ...opts, '-signature', `${d}/sig.bin`, `${d}/msg.bin`,
        ]),
      ).toThrow();
    }
  });
});

describe('JWT signed by the daemon verifies with jose', () => {
  async function jwt(KeyId: string, alg: 'ES256' | 'PS256', SigningAlgorithm: SigningAlgorithmSpec) {
    const now = Math.floor(Date.now() / 1000);
    const signingInput = `${b64url(JSON.stringify({ alg, typ: 'JWT', kid: KeyId }))}.${b64url(
      JSON.stringify({ sub: 'user-42', iss: 'p11kms-test', aud: 'api', iat: now, exp: now + 300 }),
    )}`;
    const signed = await h.kms.send(new SignCommand({ KeyId, Message: Buffer.from(signingInput), SigningAlgorithm }));
    const sig = alg === 'ES256' ? derToP1363(signed.Signature!, 32) : Buffer.from(signed.Signature!);
    return `${signingInput}.${b64url(sig)}`;
  }

  it('ES256 (ECC_NIST_P256, ECDSA_SHA_256) and PS256 (RSA_2048, RSASSA_PSS_SHA_256)', async () => {
    for (const [spec, alg, signing] of [
      ['ECC_NIST_P256', 'ES256', 'ECDSA_SHA_256'],
      ['RSA_2048', 'PS256', 'RSASSA_PSS_SHA_256'],
    ] as const) {
      const token = await jwt(keys[spec]!.KeyId!, alg, signing);
      const pem = spkiPem((await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec]!.KeyId }))).PublicKey!);
      const { payload, protectedHeader } = await jwtVerify(token, await importSPKI(pem, alg), { issuer: 'p11kms-test', audience: 'api' });
      expect(protectedHeader.alg).toBe(alg);
      expect(payload.sub).toBe('user-42');
      // A token with a changed payload does not verify.
      const [hd, , sg] = token.split('.');
      const forged = `${hd}.${b64url(JSON.stringify({ sub: 'admin', iss: 'p11kms-test', aud: 'api' }))}.${sg}`;
      await expect(jwtVerify(forged, await importSPKI(pem, alg))).rejects.toThrow();
    }
  });
});

describe('Sign and Verify errors', () => {
  it('a changed signature or message is KMSInvalidSignatureException', async () => {
    for (const spec of ['RSA_2048', 'ECC_NIST_P256', 'ECC_NIST_P521'] as const) {
      const alg = SIGNING_SPECS[spec][0];
      const KeyId = keys[spec]!.KeyId;
      const message = Buffer.from('the message');
      const sig = Buffer.from((await h.kms.send(new SignCommand({ KeyId, Message: message, SigningAlgorithm: alg }))).Signature!);
      const flipped = Buffer.from(sig);
      flipped[flipped.length - 3]! ^= 0x01;
      const variants: [Buffer, Buffer][] = [
        [message, flipped],
        [Buffer.from('another message'), sig],
        [message, sig.subarray(0, sig.length - 1)],
        [message, Buffer.from('not a signature at all')],
      ];
      for (const [Message, Signature] of variants) {
        const e = await failure(h.kms.send(new VerifyCommand({ KeyId, Message, Signature, SigningAlgorithm: alg })));
        expect(e.name, spec).toBe('KMSInvalidSignatureException');
        expect(e.$metadata?.httpStatusCode).toBe(400);
      }
      // Signed as RAW, verified as DIGEST of the same bytes: a different digest, so invalid.
      const asDigest = await failure(
        h.kms.send(new VerifyCommand({ KeyId, Message: createHash(hashOf(alg)).update('x').digest(), MessageType: 'DIGEST', Signature: sig, SigningAlgorithm: alg })),
      );
      expect(asDigest.name).toBe('KMSInvalidSignatureException');
    }
  });

  it('a signature from another key of the same spec does not verify', async () => {
    const other = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!;
    const sig = await h.kms.send(new SignCommand({ KeyId: other.KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' }));
    const e = await failure(
      h.kms.send(new VerifyCommand({ KeyId: keys.ECC_NIST_P256!.KeyId, Message: Buffer.from('m'), Signature: sig.Signature, SigningAlgorithm: 'ECDSA_SHA_256' })),
    );
    expect(e.name).toBe('KMSInvalidSignatureException');
  });

  it('a DIGEST of the wrong length, an oversized message and EXTERNAL_MU are ValidationException', async () => {
    const KeyId = keys.RSA_2048!.KeyId;
    for (const [Message, MessageType, SigningAlgorithm] of [
      [randomBytes(32), 'DIGEST', 'RSASSA_PSS_SHA_384'],
      [randomBytes(48), 'DIGEST', 'RSASSA_PKCS1_V1_5_SHA_256'],
      [randomBytes(20), 'DIGEST', 'RSASSA_PKCS1_V1_5_SHA_256'],
      [randomBytes(4097), 'RAW', 'RSASSA_PKCS1_V1_5_SHA_256'],
      [randomBytes(64), 'EXTERNAL_MU', 'RSASSA_PKCS1_V1_5_SHA_256'],
    ] as const) {
      const e = await failure(h.kms.send(new SignCommand({ KeyId, Message, MessageType, SigningAlgorithm })));
      expect(e.name, `${MessageType} ${Message.length} ${SigningAlgorithm}`).toBe('ValidationException');
    }
    const e = await failure(h.kms.send(new SignCommand({ KeyId, Message: randomBytes(32), MessageType: 'DIGEST', SigningAlgorithm: 'RSASSA_PSS_SHA_512' })));
    expect(e.message).toMatch(/Digest is invalid length for algorithm RSASSA_PSS_SHA_512/);
  });

  it('an algorithm the key spec does not offer is InvalidKeyUsageException', async () => {
    for (const [spec, alg] of [
      ['ECC_NIST_P256', 'ECDSA_SHA_384'],
      ['ECC_NIST_P384', 'ECDSA_SHA_256'],
      ['ECC_SECG_P256K1', 'ECDSA_SHA_512'],
      ['ECC_NIST_P256', 'RSASSA_PSS_SHA_256'],
      ['RSA_2048', 'ECDSA_SHA_256'],
      ['RSA_2048', 'SM2DSA'],
      ['RSA_2048', 'ED25519_SHA_512'],
    ] as const) {
      for (const call of [
        h.kms.send(new SignCommand({ KeyId: keys[spec]!.KeyId, Message: Buffer.from('m'), SigningAlgorithm: alg })),
        h.kms.send(new VerifyCommand({ KeyId: keys[spec]!.KeyId, Message: Buffer.from('m'), Signature: Buffer.alloc(64, 1), SigningAlgorithm: alg })),
      ]) {
        const e = await failure(call);
        expect(e.name, `${spec} ${alg}`).toBe('InvalidKeyUsageException');
        expect(e.message).toContain(`Algorithm ${alg} is incompatible with key spec ${spec}`);
      }
    }
  });

  it('wrong key usage is InvalidKeyUsageException both ways', async () => {
    const sym = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const e1 = await failure(h.kms.send(new SignCommand({ KeyId: sym.KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' })));
    expect(e1.name).toBe('InvalidKeyUsageException');
    expect(e1.message).toBe(`${sym.Arn} key usage is ENCRYPT_DECRYPT which is not valid for Sign.`);
    for (const spec of ['RSA_2048', 'ECC_NIST_P256'] as const) {
      const enc = await failure(h.kms.send(new EncryptCommand({ KeyId: keys[spec]!.KeyId, Plaintext: Buffer.from('x'), EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' })));
      expect(enc.name).toBe('InvalidKeyUsageException');
      expect(enc.message).toContain('key usage is SIGN_VERIFY');
      const dk = await failure(h.kms.send(new GenerateDataKeyCommand({ KeyId: keys[spec]!.KeyId, KeySpec: 'AES_256' })));
      expect(dk.name).toBe('InvalidKeyUsageException');
    }
  });

  it('a disabled key refuses Sign, Verify and GetPublicKey with DisabledException; DryRun signs nothing', async () => {
    const k = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!;
    const sig = (await h.kms.send(new SignCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' }))).Signature!;
    const dry = await failure(h.kms.send(new SignCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256', DryRun: true })));
    expect(dry.name).toBe('DryRunOperationException');
    await h.kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    for (const call of [
      h.kms.send(new SignCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' })),
      h.kms.send(new VerifyCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), Signature: sig, SigningAlgorithm: 'ECDSA_SHA_256' })),
      h.kms.send(new GetPublicKeyCommand({ KeyId: k.KeyId })),
    ]) {
      expect((await failure(call)).name).toBe('DisabledException');
    }
    await h.kms.send(new EnableKeyCommand({ KeyId: k.KeyId }));
    const v = await h.kms.send(new VerifyCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), Signature: sig, SigningAlgorithm: 'ECDSA_SHA_256' }));
    expect(v.SignatureValid).toBe(true);
  });
});

describe('key pairs in the token', () => {
  it('each key is a private and a public object with one CKA_ID; the private half is sensitive, non-extractable and sign-only', async () => {
    const objects = inspectToken(h.token);
    for (const spec of SPECS) {
      const mine = objects.filter((o) => o.label === `p11kms:${keys[spec]!.KeyId}:v1`);
      expect(mine.map((o) => o.cls).sort(), spec).toEqual(['private', 'public']);
      expect(mine[0]!.id).toBe(mine[1]!.id);
      const priv = mine.find((o) => o.cls === 'private')!;
      const pub = mine.find((o) => o.cls === 'public')!;
      expect(priv).toMatchObject({
        keyType: spec.startsWith('RSA') ? 'RSA' : 'EC', token: true, priv: true, sensitive: true, extractable: false,
        neverExtractable: true, modifiable: false, sign: true, decrypt: false, derive: false, unwrap: false,
      });
      expect(priv.valueRead).toBe('CKR_ATTRIBUTE_SENSITIVE');
      expect(priv.wrapped).not.toBe('WRAPPED');
      expect(pub).toMatchObject({ token: true, priv: true, modifiable: false, verify: true, encrypt: false, wrap: false });
      expect(pub.valueRead).toBe('READABLE');
    }
  });
});
