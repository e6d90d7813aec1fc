import {
  CreateKeyCommand, DeriveSharedSecretCommand, DescribeKeyCommand, DisableKeyCommand, EncryptCommand, GetPublicKeyCommand,
  SignCommand, type KeyMetadata,
} from '@aws-sdk/client-kms';
import { createECDH, diffieHellman, generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { spkiKey } from '../helpers/asymmetric.js';
import { inspectToken } from '../helpers/inspect.js';

let h: Harness;
const CURVES = { ECC_NIST_P256: 'prime256v1', ECC_NIST_P384: 'secp384r1', ECC_NIST_P521: 'secp521r1' } as const;
const SECRET_BYTES = { ECC_NIST_P256: 32, ECC_NIST_P384: 48, ECC_NIST_P521: 66 } as const;
type Spec = keyof typeof CURVES;
const SPECS = Object.keys(CURVES) as Spec[];
const keys = {} as Record<Spec, KeyMetadata>;

const spkiOf = (key: ReturnType<typeof generateKeyPairSync>['publicKey']) => key.export({ type: 'spki', format: 'der' });

beforeAll(async () => {
  h = await startHarness();
  for (const KeySpec of SPECS) {
    keys[KeySpec] = (await h.kms.send(new CreateKeyCommand({ KeySpec, KeyUsage: 'KEY_AGREEMENT' }))).KeyMetadata!;
  }
});
afterAll(async () => {
  await h?.stop();
});

describe('DeriveSharedSecret', () => {
  it('DescribeKey and GetPublicKey show KeyAgreementAlgorithms [ECDH] for KEY_AGREEMENT keys', async () => {
    for (const spec of SPECS) {
      const meta = (await h.kms.send(new DescribeKeyCommand({ KeyId: keys[spec].KeyId }))).KeyMetadata!;
      expect(meta).toMatchObject({ KeySpec: spec, KeyUsage: 'KEY_AGREEMENT', KeyAgreementAlgorithms: ['ECDH'] });
      expect(meta.SigningAlgorithms).toBeUndefined();
      const pub = await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec].KeyId }));
      expect(pub).toMatchObject({ KeyUsage: 'KEY_AGREEMENT', KeyAgreementAlgorithms: ['ECDH'] });
      expect(spkiKey(pub.PublicKey!).asymmetricKeyDetails?.namedCurve).toBe(CURVES[spec]);
    }
  });

  it('derives the same raw secret node:crypto derives on the other side, for every NIST curve', async () => {
    for (const spec of SPECS) {
      const peer = generateKeyPairSync('ec', { namedCurve: CURVES[spec] });
      const out = await h.kms.send(
        new DeriveSharedSecretCommand({ KeyId: keys[spec].KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey: spkiOf(peer.publicKey) }),
      );
      expect(out).toMatchObject({ KeyId: keys[spec].Arn, KeyAgreementAlgorithm: 'ECDH', KeyOrigin: 'AWS_KMS' });
      const kmsPublic = spkiKey((await h.kms.send(new GetPublicKeyCommand({ KeyId: keys[spec].KeyId }))).PublicKey!);
      const expected = diffieHellman({ privateKey: peer.privateKey, publicKey: kmsPublic });
      expect(out.SharedSecret!.length).toBe(SECRET_BYTES[spec]);
      expect(Buffer.from(out.SharedSecret!).equals(expected), spec).toBe(true);
    }
  });

  it('two KMS keys agree on one secret from each other\'s GetPublicKey', async () => {
    const other = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'KEY_AGREEMENT' }))).KeyMetadata!;
    const pubA = (await h.kms.send(new GetPublicKeyCommand({ KeyId: keys.ECC_NIST_P384.KeyId }))).PublicKey!;
    const pubB = (await h.kms.send(new GetPublicKeyCommand({ KeyId: other.KeyId }))).PublicKey!;
    const ab = await h.kms.send(new DeriveSharedSecretCommand({ KeyId: keys.ECC_NIST_P384.KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey: pubB }));
    const ba = await h.kms.send(new DeriveSharedSecretCommand({ KeyId: other.Arn, KeyAgreementAlgorithm: 'ECDH', PublicKey: pubA }));
    expect(Buffer.from(ab.SharedSecret!).equals(Buffer.from(ba.SharedSecret!))).toBe(true);
  });

  it('the private half may only derive; it is sensitive and non-extractable', () => {
    const objects = inspectToken(h.token);
    for (const spec of SPECS) {
      const priv = objects.find((o) => o.label === `p11kms:${keys[spec].KeyId}:v1` && o.cls === 'private');
      expect(priv).toMatchObject({
        keyType: 'EC', sensitive: true, extractable: false, neverExtractable: true, derive: true, sign: false, decrypt: false,
        valueRead: 'CKR_ATTRIBUTE_SENSITIVE',
      });
    }
  });
});

describe('DeriveSharedSecret errors', () => {
  it('a public key on another curve, of another type, or not SPKI at all is ValidationException', async () => {
    const KeyId = keys.ECC_NIST_P256.KeyId;
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey;
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey;
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    const x25519 = generateKeyPairSync('x25519').publicKey;
    const rawPoint = createECDH('prime256v1');
    rawPoint.generateKeys();
    for (const PublicKey of [spkiOf(p384), spkiOf(k1), spkiOf(rsa), spkiOf(x25519), rawPoint.getPublicKey(), Buffer.from('junk')]) {
      const e = await failure(h.kms.send(new DeriveSharedSecretCommand({ KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey })));
      expect(e.name).toBe('ValidationException');
    }
    // A point that is not on the curve: a valid SPKI frame around a damaged point.
    const good = Buffer.from(spkiOf(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey));
    good[good.length - 1]! ^= 0x01;
    const off = await failure(h.kms.send(new DeriveSharedSecretCommand({ KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey: good })));
    expect(off.name).toBe('ValidationException');
  });

  it('a key without KEY_AGREEMENT usage is InvalidKeyUsageException; a KEY_AGREEMENT key cannot sign or encrypt', async () => {
    const signer = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!;
    const sym = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const peer = spkiOf(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey);
    for (const k of [signer, sym]) {
      const e = await failure(h.kms.send(new DeriveSharedSecretCommand({ KeyId: k.KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey: peer })));
      expect(e.name).toBe('InvalidKeyUsageException');
      expect(e.message).toContain('which is not valid for DeriveSharedSecret');
    }
    const KeyId = keys.ECC_NIST_P256.KeyId;
    for (const call of [
      h.kms.send(new SignCommand({ KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' })),
      h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('m') })),
    ]) {
      expect((await failure(call)).name).toBe('InvalidKeyUsageException');
    }
  });

  it('an unknown algorithm is ValidationException; a disabled key DisabledException; DryRun derives nothing', async () => {
    const KeyId = keys.ECC_NIST_P256.KeyId;
    const peer = spkiOf(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey);
    const alg = await failure(h.kms.send(new DeriveSharedSecretCommand({ KeyId, KeyAgreementAlgorithm: 'ECMQV' as 'ECDH', PublicKey: peer })));
    expect(alg.name).toBe('ValidationException');
    const dry = await failure(h.kms.send(new DeriveSharedSecretCommand({ KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey: peer, DryRun: true })));
    expect(dry.name).toBe('DryRunOperationException');
    const k = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'KEY_AGREEMENT' }))).KeyMetadata!;
    await h.kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    const dis = await failure(h.kms.send(new DeriveSharedSecretCommand({ KeyId: k.KeyId, KeyAgreementAlgorithm: 'ECDH', PublicKey: peer })));
    expect(dis.name).toBe('DisabledException');
  });
});
