/**
 * AWS's exact answers to input it refuses (the fuzz findings of issue 12) and the order of its
 * checks, one test per rule, through the real daemon: the AWS SDK where it can send the request,
 * raw signed HTTP where no SDK would.
 */
import {
  CreateAliasCommand, CreateGrantCommand, CreateKeyCommand, DecryptCommand, DescribeKeyCommand, DisableKeyCommand, EncryptCommand,
  GetKeyPolicyCommand, ListGrantsCommand, ListKeysCommand, ListResourceTagsCommand, PutKeyPolicyCommand, RevokeGrantCommand,
  RotateKeyOnDemandCommand, ScheduleKeyDeletionCommand, TagResourceCommand, UntagResourceCommand, type KeyMetadata,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultKeyPolicy } from '../../src/kms/keys.js';
import { ACCOUNT, failure, REGION, startHarness, type Harness } from '../helpers/daemon.js';
import { expectAwsError, op, signedPost } from '../helpers/raw-request.js';

let h: Harness;
let key: KeyMetadata;
beforeAll(async () => {
  h = await startHarness();
  key = (await h.kms.send(new CreateKeyCommand({ Description: 'parity' }))).KeyMetadata!;
});
afterAll(async () => {
  await h?.stop();
});

async function rejects(p: Promise<unknown>, name: string) {
  const e = await failure(p);
  expect(e.name, `${e.name}: ${e.message}`).toBe(name);
  expect(e.$metadata?.httpStatusCode).toBe(400);
  return e;
}
const keyCount = async () => ((await h.kms.send(new ListKeysCommand({ Limit: 1000 }))).Keys ?? []).length;
const describe_ = async (KeyId: string) => (await h.kms.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata!;

describe('ARNs of another partition never name a local key', () => {
  for (const partition of ['aws-cn', 'aws-us-gov', 'aws-iso']) {
    it(`arn:${partition}:… is NotFoundException for state-changing and reading operations`, async () => {
      const grant = await h.kms.send(new CreateGrantCommand({
        KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${ACCOUNT}:user/p`, Operations: ['Decrypt'],
      }));
      const foreign = `arn:${partition}:kms:${REGION}:${ACCOUNT}:key/${key.KeyId}`;
      const policy = defaultKeyPolicy(ACCOUNT).replace('Enable IAM User Permissions', 'changed');
      for (const call of [
        new DisableKeyCommand({ KeyId: foreign }),
        new ScheduleKeyDeletionCommand({ KeyId: foreign, PendingWindowInDays: 7 }),
        new PutKeyPolicyCommand({ KeyId: foreign, PolicyName: 'default', Policy: policy }),
        new RevokeGrantCommand({ KeyId: foreign, GrantId: grant.GrantId }),
        new TagResourceCommand({ KeyId: foreign, Tags: [{ TagKey: 'k', TagValue: 'v' }] }),
        new DescribeKeyCommand({ KeyId: foreign }),
        new EncryptCommand({ KeyId: foreign, Plaintext: Buffer.from('x') }),
      ]) {
        const e = await rejects(h.kms.send(call as never), 'NotFoundException');
        expect(e.message).toBe(`Invalid arn ${foreign}`);
      }
      const meta = await describe_(key.KeyId!);
      expect(meta.KeyState).toBe('Enabled');
      expect((await h.kms.send(new GetKeyPolicyCommand({ KeyId: key.KeyId }))).Policy).not.toContain('changed');
      expect((await h.kms.send(new ListGrantsCommand({ KeyId: key.KeyId }))).Grants?.map((g) => g.GrantId)).toContain(grant.GrantId);
      expect((await h.kms.send(new ListResourceTagsCommand({ KeyId: key.KeyId }))).Tags).toEqual([]);
    });
  }

  it('an alias ARN of another partition is not found either', async () => {
    await rejects(h.kms.send(new DescribeKeyCommand({ KeyId: `arn:aws-cn:kms:${REGION}:${ACCOUNT}:alias/x` })), 'NotFoundException');
  });
});

describe('KeyId takes exactly the four documented forms', () => {
  it('key/<uuid> alone is refused by every operation, and the key is untouched', async () => {
    const bare = `key/${key.KeyId}`;
    for (const call of [new DescribeKeyCommand({ KeyId: bare }), new DisableKeyCommand({ KeyId: bare })]) {
      const e = await rejects(h.kms.send(call as never), 'NotFoundException');
      expect(e.message).toBe(`Invalid keyId '${bare}'`);
    }
    expect((await describe_(key.KeyId!)).KeyState).toBe('Enabled');
  });

  it('the four forms still work: key id, key ARN, alias name, alias ARN', async () => {
    expect((await describe_(key.KeyId!)).KeyId).toBe(key.KeyId);
    expect((await describe_(key.Arn!)).KeyId).toBe(key.KeyId);
    await h.kms.send(new CreateAliasCommand({ AliasName: 'alias/parity-forms', TargetKeyId: key.KeyId }));
    expect((await describe_('alias/parity-forms')).KeyId).toBe(key.KeyId);
    expect((await describe_(`arn:aws:kms:${REGION}:${ACCOUNT}:alias/parity-forms`)).KeyId).toBe(key.KeyId);
  });
});

describe('request bodies that are not valid UTF-8', () => {
  it('are SerializationException before anything is done', async () => {
    const before = await keyCount();
    const body = Buffer.concat([Buffer.from('{"Description":"fuzz'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    const message = expectAwsError(await signedPost(h, op('CreateKey'), body), 'SerializationException');
    expect(message).toBe('The request body is not valid UTF-8.');
    // An overlong encoding and a lone surrogate are invalid UTF-8 too.
    for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      const b = Buffer.concat([Buffer.from('{"Description":"'), Buffer.from(bad), Buffer.from('"}')]);
      expectAwsError(await signedPost(h, op('CreateKey'), b), 'SerializationException');
    }
    expect(await keyCount()).toBe(before);
  });

  it('valid multi-byte UTF-8 is accepted as sent', async () => {
    const body = Buffer.from(JSON.stringify({ Description: 'grüße ✓ 🔑' }), 'utf8');
    const res = await signedPost(h, op('CreateKey'), body);
    expect(res.status, res.text).toBe(200);
    expect(res.json.KeyMetadata.Description).toBe('grüße ✓ 🔑');
  });
});

describe('X-Amz-Security-Token', () => {
  it('is UnrecognizedClientException with AWS message: the daemon issues no temporary credentials', async () => {
    const before = await keyCount();
    const res = await signedPost(h, op('CreateKey'), '{}', { headers: { 'x-amz-security-token': 'garbage' } });
    expect(expectAwsError(res, 'UnrecognizedClientException')).toBe('The security token included in the request is invalid.');
    expect(await keyCount()).toBe(before);
  });
});

describe('structure members: the model validation and AWS wording', () => {
  it('an invalid Recipient.KeyEncryptionAlgorithm is ValidationException; a valid one is refused as unsupported', async () => {
    const ct = await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('x') }));
    const CiphertextBlob = Buffer.from(ct.CiphertextBlob!).toString('base64');
    const bad = await signedPost(h, op('Decrypt'), JSON.stringify({ CiphertextBlob, Recipient: { KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_1' } }));
    expect(expectAwsError(bad, 'ValidationException')).toBe(
      "1 validation error detected: Value 'RSAES_OAEP_SHA_1' at 'recipient.keyEncryptionAlgorithm' failed to satisfy constraint: " +
        'Member must satisfy enum value set: [RSAES_OAEP_SHA_256]',
    );
    await rejects(
      h.kms.send(new DecryptCommand({ CiphertextBlob: ct.CiphertextBlob, Recipient: { KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: Buffer.from('d') } })),
      'UnsupportedOperationException',
    );
  });

  it("a member of the wrong JSON type gets AWS's deserializer wording, never zod's", async () => {
    const cases: Array<[string, object, string]> = [
      ['Decrypt', { CiphertextBlob: 'AAAA', Recipient: 'x' }, 'STRING_VALUE can not be converted to a Structure'],
      ['Encrypt', { KeyId: key.KeyId, Plaintext: 'aGk=', EncryptionContext: ['a'] }, 'Start of list found where not expected'],
      ['Encrypt', { KeyId: { a: 1 }, Plaintext: 'aGk=' }, 'Start of structure or map found where not expected.'],
      ['ListKeys', { Limit: '10' }, 'STRING_VALUE can not be converted to an Integer'],
      ['DescribeKey', { KeyId: 5 }, 'NUMBER_VALUE can not be converted to a String'],
      ['CreateKey', { MultiRegion: 'yes' }, 'STRING_VALUE can not be converted to a Boolean'],
    ];
    for (const [name, body, message] of cases) {
      expect(expectAwsError(await signedPost(h, op(name), JSON.stringify(body)), 'SerializationException'), name).toBe(message);
    }
  });
});

describe('order of checks', () => {
  it('RotateKeyOnDemand on a disabled key is DisabledException, whatever the key type', async () => {
    const specs = [
      { KeySpec: 'SYMMETRIC_DEFAULT' as const },
      { KeySpec: 'RSA_2048' as const, KeyUsage: 'SIGN_VERIFY' as const },
      { KeySpec: 'HMAC_256' as const, KeyUsage: 'GENERATE_VERIFY_MAC' as const },
      { Origin: 'EXTERNAL' as const },
    ];
    for (const input of specs) {
      const k = (await h.kms.send(new CreateKeyCommand(input))).KeyMetadata!;
      if (k.KeyState === 'Enabled') await h.kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
      const e = await rejects(h.kms.send(new RotateKeyOnDemandCommand({ KeyId: k.KeyId })), k.KeyState === 'PendingImport' ? 'KMSInvalidStateException' : 'DisabledException');
      expect(e.message).toContain(k.Arn);
    }
  });

  it('RotateKeyOnDemand on an enabled asymmetric key is still UnsupportedOperationException', async () => {
    const k = (await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!;
    await rejects(h.kms.send(new RotateKeyOnDemandCommand({ KeyId: k.KeyId })), 'UnsupportedOperationException');
  });

  it('tag rule violations are TagException (reserved prefix, characters outside the tag alphabet), changing nothing', async () => {
    const before = await keyCount();
    for (const Tags of [
      [{ TagKey: 'AWS:x', TagValue: 'v' }],
      [{ TagKey: 'semi;colon', TagValue: 'v' }],
      [{ TagKey: 'ok', TagValue: 'quote"d' }],
      [{ TagKey: 'dup', TagValue: 'a' }, { TagKey: 'dup', TagValue: 'b' }],
    ]) {
      await rejects(h.kms.send(new CreateKeyCommand({ Tags })), 'TagException');
      await rejects(h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags })), 'TagException');
    }
    await rejects(h.kms.send(new UntagResourceCommand({ KeyId: key.KeyId, TagKeys: ['aws:createdBy'] })), 'TagException');
    expect(await keyCount()).toBe(before);
    // The tag alphabet itself is accepted: letters of any script, digits, spaces and _ . : / = + - @.
    await h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags: [{ TagKey: 'Équipe 1_.:/=+-@', TagValue: 'été 2 ok' }] }));
    await h.kms.send(new UntagResourceCommand({ KeyId: key.KeyId, TagKeys: ['Équipe 1_.:/=+-@'] }));
  });

  it('validation comes before the key state: an invalid member on a disabled key is ValidationException', async () => {
    const k = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    await h.kms.send(new DisableKeyCommand({ KeyId: k.KeyId }));
    await rejects(h.kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.alloc(4097) })), 'ValidationException');
    await rejects(h.kms.send(new EncryptCommand({ KeyId: k.KeyId, Plaintext: Buffer.from('x') })), 'DisabledException');
  });
});
