import {
  CreateKeyCommand, DescribeKeyCommand, DisableKeyCommand, EncryptCommand, GenerateDataKeyCommand,
  GenerateMacCommand, GetPublicKeyCommand, SignCommand, VerifyMacCommand, type KeyMetadata, type MacAlgorithmSpec,
} from '@aws-sdk/client-kms';
import { createHmac, randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModule } from '../../src/hsm/module.js';
import { LABEL_PREFIX, objectIdFor } from '../../src/kms/material.js';
import { failure, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { SOFTHSM_MODULE } from '../helpers/softhsm.js';

let h: Harness;
const SPECS = {
  HMAC_224: 'HMAC_SHA_224',
  HMAC_256: 'HMAC_SHA_256',
  HMAC_384: 'HMAC_SHA_384',
  HMAC_512: 'HMAC_SHA_512',
} as const;
type Spec = keyof typeof SPECS;
const keys = {} as Record<Spec, KeyMetadata>;
const bits = (spec: Spec) => Number(spec.slice(5));

beforeAll(async () => {
  h = await startHarness();
  for (const KeySpec of Object.keys(SPECS) as Spec[]) {
    keys[KeySpec] = (await h.kms.send(new CreateKeyCommand({ KeySpec, KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!;
  }
});
afterAll(async () => {
  await h?.stop();
});

/**
 * Replaces a key's token object with a secret whose value the test knows, under the same CKA_ID
 * and label, so the daemon's MACs can be checked against node:crypto. (The daemon's own keys
 * cannot be read, which is the point; this is how a known-answer test gets a key.)
 */
async function withKnownKey(spec: Spec): Promise<{ KeyId: string; secret: Buffer }> {
  const meta = (await h.kms.send(new CreateKeyCommand({ KeySpec: spec, KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!;
  const id = objectIdFor(meta.KeyId!, 1);
  expect(await h.daemon.token.destroy(id)).toBe(1);
  const secret = randomBytes(bits(spec) / 8);
  const p = loadModule(SOFTHSM_MODULE).pkcs11; // the daemon's module instance: already logged in
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === h.token.label)!;
  const s = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
  try {
    p.C_CreateObject(s, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_VALUE, value: secret },
      { type: pkcs11js.CKA_ID, value: id },
      { type: pkcs11js.CKA_LABEL, value: `${LABEL_PREFIX}${meta.KeyId}:v1` },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_VERIFY, value: true },
    ]);
  } finally {
    p.C_CloseSession(s);
  }
  return { KeyId: meta.KeyId!, secret };
}

describe('HMAC keys', () => {
  it('DescribeKey shows each spec with its one MAC algorithm', async () => {
    for (const spec of Object.keys(SPECS) as Spec[]) {
      const meta = (await h.kms.send(new DescribeKeyCommand({ KeyId: keys[spec].KeyId }))).KeyMetadata!;
      expect(meta).toMatchObject({ KeySpec: spec, KeyUsage: 'GENERATE_VERIFY_MAC', MacAlgorithms: [SPECS[spec]], KeyState: 'Enabled' });
      expect(meta.EncryptionAlgorithms).toBeUndefined();
      expect(meta.SigningAlgorithms).toBeUndefined();
    }
  });

  it('GenerateMac computes RFC 2104 HMAC in the token: equal to node:crypto for a key of known value', async () => {
    for (const spec of Object.keys(SPECS) as Spec[]) {
      const { KeyId, secret } = await withKnownKey(spec);
      for (const message of [Buffer.from('a'), randomBytes(1000), randomBytes(4096)]) {
        const out = await h.kms.send(new GenerateMacCommand({ KeyId, Message: message, MacAlgorithm: SPECS[spec] }));
        const expected = createHmac(`sha${bits(spec)}`, secret).update(message).digest();
        expect(Buffer.from(out.Mac!).equals(expected), spec).toBe(true);
        expect(out).toMatchObject({ MacAlgorithm: SPECS[spec], KeyId: expect.stringContaining(KeyId) });
      }
    }
  });

  it('the daemon-generated keys give deterministic MACs of the digest length that VerifyMac accepts', async () => {
    for (const spec of Object.keys(SPECS) as Spec[]) {
      const KeyId = keys[spec].KeyId;
      const Message = Buffer.from('tokenise me');
      const a = await h.kms.send(new GenerateMacCommand({ KeyId, Message, MacAlgorithm: SPECS[spec] }));
      const b = await h.kms.send(new GenerateMacCommand({ KeyId: keys[spec].Arn, Message, MacAlgorithm: SPECS[spec] }));
      expect(a.Mac!.length).toBe(bits(spec) / 8);
      expect(Buffer.from(a.Mac!).equals(Buffer.from(b.Mac!))).toBe(true);
      expect(a.KeyId).toBe(keys[spec].Arn);
      const v = await h.kms.send(new VerifyMacCommand({ KeyId, Message, Mac: a.Mac, MacAlgorithm: SPECS[spec] }));
      expect(v).toMatchObject({ KeyId: keys[spec].Arn, MacValid: true, MacAlgorithm: SPECS[spec] });
    }
    // Two keys of one spec give different MACs: the key is random, not derived from the spec.
    const other = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!;
    const m1 = await h.kms.send(new GenerateMacCommand({ KeyId: keys.HMAC_256.KeyId, Message: Buffer.from('x'), MacAlgorithm: 'HMAC_SHA_256' }));
    const m2 = await h.kms.send(new GenerateMacCommand({ KeyId: other.KeyId, Message: Buffer.from('x'), MacAlgorithm: 'HMAC_SHA_256' }));
    expect(Buffer.from(m1.Mac!).equals(Buffer.from(m2.Mac!))).toBe(false);
  });

  it('the secret is a sensitive, non-extractable generic secret of the spec length that can only sign and verify', async () => {
    const objects = inspectToken(h.token);
    for (const spec of Object.keys(SPECS) as Spec[]) {
      const mine = objects.filter((o) => o.label === `p11kms:${keys[spec].KeyId}:v1`);
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({
        cls: 'secret', keyType: 'GENERIC_SECRET', token: true, priv: true, sensitive: true, extractable: false,
        neverExtractable: true, modifiable: false, sign: true, verify: true, encrypt: false, decrypt: false, derive: false,
        wrap: false, unwrap: false, valueRead: 'CKR_ATTRIBUTE_SENSITIVE',
      });
      expect(mine[0]!.wrapped).not.toBe('WRAPPED');
    }
  });
});

describe('HMAC errors', () => {
  it('a different MAC, message or length is KMSInvalidMacException', async () => {
    const KeyId = keys.HMAC_384.KeyId;
    const Message = Buffer.from('message');
    const mac = Buffer.from((await h.kms.send(new GenerateMacCommand({ KeyId, Message, MacAlgorithm: 'HMAC_SHA_384' }))).Mac!);
    const flipped = Buffer.from(mac);
    flipped[0]! ^= 0x80;
    for (const [m, tag] of [
      [Message, flipped],
      [Buffer.from('messagf'), mac],
      [Message, mac.subarray(0, 32)],
      [Message, Buffer.concat([mac, Buffer.from([0])])],
    ] as const) {
      const e = await failure(h.kms.send(new VerifyMacCommand({ KeyId, Message: m, Mac: tag, MacAlgorithm: 'HMAC_SHA_384' })));
      expect(e.name).toBe('KMSInvalidMacException');
      expect(e.$metadata?.httpStatusCode).toBe(400);
    }
  });

  it('a MAC algorithm the key spec does not offer is InvalidKeyUsageException', async () => {
    for (const [spec, alg] of [['HMAC_256', 'HMAC_SHA_384'], ['HMAC_512', 'HMAC_SHA_256'], ['HMAC_224', 'HMAC_SHA_512']] as const) {
      for (const call of [
        h.kms.send(new GenerateMacCommand({ KeyId: keys[spec].KeyId, Message: Buffer.from('m'), MacAlgorithm: alg as MacAlgorithmSpec })),
        h.kms.send(new VerifyMacCommand({ KeyId: keys[spec].KeyId, Message: Buffer.from('m'), Mac: Buffer.alloc(32), MacAlgorithm: alg })),
      ]) {
        const e = await failure(call);
        expect(e.name).toBe('InvalidKeyUsageException');
        expect(e.message).toBe(`Algorithm ${alg} is incompatible with key spec ${spec}.`);
      }
    }
  });

  it('wrong key usage is InvalidKeyUsageException both ways', async () => {
    const sym = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const e = await failure(h.kms.send(new GenerateMacCommand({ KeyId: sym.KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_256' })));
    expect(e.name).toBe('InvalidKeyUsageException');
    expect(e.message).toBe(`${sym.Arn} key usage is ENCRYPT_DECRYPT which is not valid for GenerateMac.`);
    const KeyId = keys.HMAC_256.KeyId;
    for (const call of [
      h.kms.send(new EncryptCommand({ KeyId, Plaintext: Buffer.from('x') })),
      h.kms.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256' })),
      h.kms.send(new SignCommand({ KeyId, Message: Buffer.from('m'), SigningAlgorithm: 'ECDSA_SHA_256' })),
    ]) {
      expect((await failure(call)).name).toBe('InvalidKeyUsageException');
    }
    expect((await failure(h.kms.send(new GetPublicKeyCommand({ KeyId })))).name).toBe('UnsupportedOperationException');
  });

  it('an oversized message is ValidationException; a disabled key DisabledException; DryRun computes nothing', async () => {
    const KeyId = keys.HMAC_256.KeyId;
    const big = await failure(h.kms.send(new GenerateMacCommand({ KeyId, Message: randomBytes(4097), MacAlgorithm: 'HMAC_SHA_256' })));
    expect(big.name).toBe('ValidationException');
    const dry = await failure(h.kms.send(new GenerateMacCommand({ KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_256', DryRun: true })));
    expect(dry.name).toBe('DryRunOperationException');
    const k = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }))).KeyMetadata!;
    const mac = (await h.kms.send(new GenerateMacCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_256' }))).Mac;
    await h.kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    for (const call of [
      h.kms.send(new GenerateMacCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), MacAlgorithm: 'HMAC_SHA_256' })),
      h.kms.send(new VerifyMacCommand({ KeyId: k.KeyId, Message: Buffer.from('m'), Mac: mac, MacAlgorithm: 'HMAC_SHA_256' })),
    ]) {
      expect((await failure(call)).name).toBe('DisabledException');
    }
  });
});
