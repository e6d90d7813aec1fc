import {
  CreateKeyCommand, DecryptCommand, DisableKeyCommand, GenerateDataKeyPairCommand, GenerateDataKeyPairWithoutPlaintextCommand,
  type DataKeyPairSpec, type GenerateDataKeyPairCommandOutput, type KeyMetadata,
} from '@aws-sdk/client-kms';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModule } from '../../src/hsm/module.js';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { hasOpenssl, openssl, spkiKey } from '../helpers/asymmetric.js';
import { SOFTHSM_MODULE } from '../helpers/softhsm.js';

let h: Harness;
let kek: KeyMetadata;
const SPECS = {
  RSA_2048: { type: 'rsa', size: 2048 },
  RSA_3072: { type: 'rsa', size: 3072 },
  RSA_4096: { type: 'rsa', size: 4096 },
  ECC_NIST_P256: { type: 'ec', curve: 'prime256v1' },
  ECC_NIST_P384: { type: 'ec', curve: 'secp384r1' },
  ECC_NIST_P521: { type: 'ec', curve: 'secp521r1' },
  ECC_SECG_P256K1: { type: 'ec', curve: 'secp256k1' },
} as const;
type Spec = keyof typeof SPECS;
const pairs = {} as Record<Spec, GenerateDataKeyPairCommandOutput>;
const EC = { purpose: 'data-key-pair', tenant: 't-1' };

/** Objects the daemon's own process can see that are not token objects: session objects left behind. */
function sessionObjectCount(): number {
  const p = loadModule(SOFTHSM_MODULE).pkcs11;
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === h.token.label)!;
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  try {
    p.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_TOKEN, value: false }]);
    const found = p.C_FindObjects(s, 1000);
    p.C_FindObjectsFinal(s);
    return found.length;
  } finally {
    p.C_CloseSession(s);
  }
}

beforeAll(async () => {
  h = await startHarness();
  kek = (await h.kms.send(new CreateKeyCommand({ Description: 'wraps data key pairs' }))).KeyMetadata!;
  await Promise.all(
    (Object.keys(SPECS) as Spec[]).map(async (KeyPairSpec) => {
      pairs[KeyPairSpec] = await h.kms.send(new GenerateDataKeyPairCommand({ KeyId: kek.KeyId, KeyPairSpec, EncryptionContext: EC }));
    }),
  );
}, 120_000);
afterAll(async () => {
  await h?.stop();
});

describe('GenerateDataKeyPair', () => {
  it('returns a PKCS#8 private key and its SPKI public key of the requested spec, which node:crypto uses to sign and verify', () => {
    for (const spec of Object.keys(SPECS) as Spec[]) {
      const out = pairs[spec];
      expect(out).toMatchObject({ KeyId: kek.Arn, KeyPairSpec: spec, KeyMaterialId: kek.CurrentKeyMaterialId });
      const priv = createPrivateKey({ key: Buffer.from(out.PrivateKeyPlaintext!), format: 'der', type: 'pkcs8' });
      const pub = spkiKey(out.PublicKey!);
      const want = SPECS[spec];
      expect(priv.asymmetricKeyType).toBe(want.type);
      if (want.type === 'rsa') expect(priv.asymmetricKeyDetails).toMatchObject({ modulusLength: want.size, publicExponent: 65537n });
      else expect(priv.asymmetricKeyDetails?.namedCurve).toBe(want.curve);
      // The public key is the private key's.
      expect(createPublicKey(priv).export({ type: 'spki', format: 'der' }).equals(Buffer.from(out.PublicKey!))).toBe(true);
      const msg = Buffer.from(`made by the token for ${spec}`);
      expect(verify('sha256', msg, pub, sign('sha256', msg, priv)), spec).toBe(true);
      // The exact PKCS#8 bytes re-encode identically (canonical DER).
      expect(priv.export({ type: 'pkcs8', format: 'der' }).equals(Buffer.from(out.PrivateKeyPlaintext!))).toBe(true);
    }
  });

  it('Decrypt of PrivateKeyCiphertextBlob with the encryption context returns the same PKCS#8 bytes', async () => {
    for (const spec of Object.keys(SPECS) as Spec[]) {
      const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: pairs[spec].PrivateKeyCiphertextBlob, EncryptionContext: EC }));
      expect(Buffer.from(dec.Plaintext!).equals(Buffer.from(pairs[spec].PrivateKeyPlaintext!)), spec).toBe(true);
      expect(dec).toMatchObject({ KeyId: kek.Arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT', KeyMaterialId: kek.CurrentKeyMaterialId });
      const wrong = await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: pairs[spec].PrivateKeyCiphertextBlob, EncryptionContext: { ...EC, tenant: 't-2' } })));
      expect(wrong.name).toBe('InvalidCiphertextException');
    }
  });

  it('every call makes a new pair', async () => {
    const again = await h.kms.send(new GenerateDataKeyPairCommand({ KeyId: kek.KeyId, KeyPairSpec: 'ECC_NIST_P256' }));
    expect(Buffer.from(again.PublicKey!).equals(Buffer.from(pairs.ECC_NIST_P256.PublicKey!))).toBe(false);
    expect(Buffer.from(again.PrivateKeyPlaintext!).equals(Buffer.from(pairs.ECC_NIST_P256.PrivateKeyPlaintext!))).toBe(false);
  });

  it.skipIf(!hasOpenssl)('openssl accepts the private keys and finds them consistent (RSA and EC)', () => {
    for (const spec of ['RSA_2048', 'ECC_NIST_P384', 'ECC_SECG_P256K1'] as const) {
      const out = openssl({ 'key.der': pairs[spec].PrivateKeyPlaintext! }, (d) => ['pkey', '-inform', 'DER', '-in', `${d}/key.der`, '-check', '-noout']);
      expect(out.toString(), spec).toMatch(/valid/i);
    }
  });

  it('leaves no objects behind in the token: the pair and the one-time wrapping key were session objects, destroyed', () => {
    expect(sessionObjectCount()).toBe(0);
  });
});

describe('GenerateDataKeyPairWithoutPlaintext', () => {
  it('returns only the public key and the sealed private key, which Decrypt opens to the matching PKCS#8 key', async () => {
    for (const KeyPairSpec of ['RSA_2048', 'ECC_NIST_P256'] as const) {
      const out = await h.kms.send(new GenerateDataKeyPairWithoutPlaintextCommand({ KeyId: kek.Arn, KeyPairSpec }));
      expect('PrivateKeyPlaintext' in out).toBe(false);
      expect(out).toMatchObject({ KeyId: kek.Arn, KeyPairSpec, KeyMaterialId: kek.CurrentKeyMaterialId });
      const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: out.PrivateKeyCiphertextBlob }));
      const priv = createPrivateKey({ key: Buffer.from(dec.Plaintext!), format: 'der', type: 'pkcs8' });
      expect(createPublicKey(priv).export({ type: 'spki', format: 'der' }).equals(Buffer.from(out.PublicKey!))).toBe(true);
    }
    expect(sessionObjectCount()).toBe(0);
  });
});

describe('GenerateDataKeyPair errors', () => {
  it('needs a symmetric encryption key: asymmetric and HMAC keys are InvalidKeyUsageException', async () => {
    for (const [KeySpec, KeyUsage] of [['ECC_NIST_P256', 'SIGN_VERIFY'], ['ECC_NIST_P256', 'KEY_AGREEMENT'], ['HMAC_256', 'GENERATE_VERIFY_MAC']] as const) {
      const k = (await h.kms.send(new CreateKeyCommand({ KeySpec, KeyUsage }))).KeyMetadata!;
      for (const call of [
        h.kms.send(new GenerateDataKeyPairCommand({ KeyId: k.KeyId, KeyPairSpec: 'ECC_NIST_P256' })),
        h.kms.send(new GenerateDataKeyPairWithoutPlaintextCommand({ KeyId: k.KeyId, KeyPairSpec: 'ECC_NIST_P256' })),
      ]) {
        expect((await failure(call)).name, `${KeySpec} ${KeyUsage}`).toBe('InvalidKeyUsageException');
      }
    }
  });

  it('SM2 and Ed25519 pairs are UnsupportedOperationException; an unknown spec is ValidationException', async () => {
    for (const KeyPairSpec of ['SM2', 'ECC_NIST_EDWARDS25519'] as DataKeyPairSpec[]) {
      const e = await failure(h.kms.send(new GenerateDataKeyPairCommand({ KeyId: kek.KeyId, KeyPairSpec })));
      expect(e.name, KeyPairSpec).toBe('UnsupportedOperationException');
    }
    const e = await failure(h.kms.send(new GenerateDataKeyPairCommand({ KeyId: kek.KeyId, KeyPairSpec: 'RSA_1024' as DataKeyPairSpec })));
    expect(e.name).toBe('ValidationException');
  });

  it('a Recipient is refused, DryRun generates nothing, a disabled key is DisabledException', async () => {
    const rec = await failure(
      h.kms.send(new GenerateDataKeyPairCommand({ KeyId: kek.KeyId, KeyPairSpec: 'ECC_NIST_P256', Recipient: { AttestationDocument: Buffer.from('doc'), KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' } })),
    );
    expect(rec.name).toBe('UnsupportedOperationException');
    const dry = await failure(h.kms.send(new GenerateDataKeyPairCommand({ KeyId: kek.KeyId, KeyPairSpec: 'ECC_NIST_P256', DryRun: true })));
    expect(dry.name).toBe('DryRunOperationException');
    const k = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    await h.kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    const dis = await failure(h.kms.send(new GenerateDataKeyPairCommand({ KeyId: k.KeyId, KeyPairSpec: 'ECC_NIST_P256' })));
    expect(dis.name).toBe('DisabledException');
  });
});
