/**
 * The AWS KMS JSON 1.1 front door as a client sees it: request ids and content types, AWS-style
 * validation messages, serialization and unknown-operation errors, SigV4 failures over real HTTP,
 * rejected requests leaving no trace, NotFound and DryRun errors, and concurrency through the
 * PKCS#11 session pool. Raw requests are signed with @smithy/signature-v4 (test/helpers/raw-request.ts) and sent with fetch.
 */
import { Agent } from 'node:http';
import { randomUUID } from 'node:crypto';
import {
  CreateKeyCommand, DecryptCommand, DescribeKeyCommand, EncryptCommand, KMSClient, ListKeysCommand,
  UpdateKeyDescriptionCommand, type CreateKeyCommandInput, type KeyMetadata,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, ADMIN, client, failure, REGION, startHarness, type Harness } from '../helpers/daemon.js';
import { expectAwsError, JSON_11, op, readResponse, signedPost, type RawResponse } from '../helpers/raw-request.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

type SdkError = Awaited<ReturnType<typeof failure>> & { $metadata?: { httpStatusCode?: number; requestId?: string } };

async function sdkFailure(p: Promise<unknown>, name: string, status = 400): Promise<SdkError> {
  const e = (await failure(p)) as SdkError;
  expect(e.name, e.message).toBe(name);
  expect(e.$metadata?.httpStatusCode).toBe(status);
  expect(e.$metadata?.requestId).toMatch(/\S/);
  return e;
}

const ONE_ERROR = /^1 validation error detected: /;

function expectRequestId(headers: Headers): void {
  const id = headers.get('x-amzn-requestid');
  expect(id, 'x-amzn-RequestId header is missing').toBeTypeOf('string');
  expect(id).toMatch(/\S/);
}

describe('protocol (default harness)', () => {
  let h: Harness;
  let key: KeyMetadata;

  beforeAll(async () => {
    h = await startHarness();
    key = (await h.kms.send(new CreateKeyCommand({ Description: 'protocol tests' }))).KeyMetadata!;
  });
  afterAll(async () => {
    await h?.stop();
  });

  const newKey = async (Description = 'test key') => (await h.kms.send(new CreateKeyCommand({ Description }))).KeyMetadata!;

  const allKeyIds = async (): Promise<string[]> => {
    const ids: string[] = [];
    let Marker: string | undefined;
    do {
      const page = await h.kms.send(new ListKeysCommand({ Limit: 1000, Marker }));
      for (const k of page.Keys ?? []) ids.push(k.KeyId!);
      Marker = page.NextMarker;
    } while (Marker);
    return ids.sort();
  };

  describe('request ids and content types', () => {
    it('successful SDK calls carry a request id', async () => {
      const out = await h.kms.send(new DescribeKeyCommand({ KeyId: key.KeyId }));
      expect(out.$metadata.httpStatusCode).toBe(200);
      expect(out.$metadata.requestId).toMatch(/\S/);
    });

    it('a successful raw KMS response has x-amzn-RequestId and Content-Type application/x-amz-json-1.1', async () => {
      const res = await signedPost(h, op('DescribeKey'), JSON.stringify({ KeyId: key.KeyId }));
      expect(res.status).toBe(200);
      expect(res.headers.get('x-amzn-requestid')).toMatch(/\S/);
      expect(res.headers.get('content-type')).toContain(JSON_11);
      expect(res.json.KeyMetadata.KeyId).toBe(key.KeyId);
    });

    it('request ids are distinct per request', async () => {
      const ids = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const res = await signedPost(h, op('ListKeys'), '{}');
        ids.add(res.headers.get('x-amzn-requestid')!);
      }
      expect(ids.size).toBe(5);
    });

    it('error responses (client errors and auth failures) carry x-amzn-RequestId', async () => {
      const responses = [
        await signedPost(h, op('DescribeKey'), JSON.stringify({ KeyId: randomUUID() })),
        await signedPost(h, op('DescribeKey'), '{'),
        await signedPost(h, op('NoSuchThing'), '{}'),
        await signedPost(h, op('ListKeys'), '{}', { authorization: null }),
        await signedPost(h, op('ListKeys'), '{}', { credentials: { accessKeyId: ADMIN.accessKeyId, secretAccessKey: 'wrong-secret-0000000000000000000000000000' } }),
        await signedPost(h, op('ListKeys'), '{}', { credentials: { accessKeyId: 'AKIAUNKNOWNKEY000000', secretAccessKey: 'x'.repeat(40) } }),
        await signedPost(h, op('ListKeys'), '{}', { authorization: 'AWS4-HMAC-SHA256 garbage' }),
      ];
      for (const res of responses) {
        expect(res.status, res.text).toBeGreaterThanOrEqual(400);
        expect(res.headers.get('x-amzn-requestid'), res.text).toMatch(/\S/);
        expect(res.headers.get('content-type')).toContain(JSON_11);
      }
    });

    it('SDK errors expose the request id', async () => {
      const e = await sdkFailure(h.kms.send(new DescribeKeyCommand({ KeyId: randomUUID() })), 'NotFoundException');
      expect(e.$metadata?.requestId).toMatch(/\S/);
    });

    it('an oversized body is rejected with an AWS-shaped error and a request id', async () => {
      const res = await signedPost(h, op('Encrypt'), JSON.stringify({ KeyId: key.KeyId, Plaintext: 'A'.repeat(600_000) }));
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(res.headers.get('x-amzn-requestid')).toMatch(/\S/);
      expect(res.json?.__type).toMatch(/Exception$/);
    });

    it('GET /health/live carries x-amzn-RequestId', async () => {
      const res = await fetch(`${h.endpoint}/health/live`);
      expect(res.status).toBe(200);
      expectRequestId(res.headers);
    });

    it('GET /health/ready carries x-amzn-RequestId', async () => {
      const res = await fetch(`${h.endpoint}/health/ready`);
      expect(res.status).toBe(200);
      expectRequestId(res.headers);
    });

    it('a request to an unknown path still carries x-amzn-RequestId', async () => {
      const res = await fetch(`${h.endpoint}/no/such/path`);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expectRequestId(res.headers);
    });
  });

  describe('ValidationException', () => {
    it('Encrypt with a 4097-byte plaintext: exact AWS message, no plaintext echoed', async () => {
      const plaintext = Buffer.alloc(4097, 'Q');
      const e = await sdkFailure(h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: plaintext })), 'ValidationException');
      expect(e.message).toMatch(
        /^1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096$/,
      );
      const raw = await signedPost(h, op('Encrypt'), JSON.stringify({ KeyId: key.KeyId, Plaintext: plaintext.toString('base64') }));
      const message = expectAwsError(raw, 'ValidationException');
      expect(message).toMatch(
        /^1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096$/,
      );
      expect(raw.text).not.toContain('QQQQ');
      expect(raw.text).not.toContain(plaintext.toString('base64').slice(0, 32));
    });

    it('empty KeyId', async () => {
      const e = await sdkFailure(h.kms.send(new EncryptCommand({ KeyId: '', Plaintext: bytes('x') })), 'ValidationException');
      expect(e.message).toMatch(ONE_ERROR);
      expect(e.message).toContain("at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1");
      const d = await sdkFailure(h.kms.send(new DescribeKeyCommand({ KeyId: '' })), 'ValidationException');
      expect(d.message).toContain("at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1");
    });

    it('KeyId longer than 2048 characters', async () => {
      const e = await sdkFailure(h.kms.send(new DescribeKeyCommand({ KeyId: 'k'.repeat(2049) })), 'ValidationException');
      expect(e.message).toMatch(ONE_ERROR);
      expect(e.message).toContain("at 'keyId' failed to satisfy constraint: Member must have length less than or equal to 2048");
      expect(e.message).not.toContain('k'.repeat(300));
    });

    it('Description longer than 8192 characters on CreateKey and UpdateKeyDescription', async () => {
      const Description = 'd'.repeat(8193);
      const c = await sdkFailure(h.kms.send(new CreateKeyCommand({ Description })), 'ValidationException');
      expect(c.message).toMatch(ONE_ERROR);
      expect(c.message).toContain("at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192");
      const u = await sdkFailure(h.kms.send(new UpdateKeyDescriptionCommand({ KeyId: key.KeyId, Description })), 'ValidationException');
      expect(u.message).toMatch(ONE_ERROR);
      expect(u.message).toContain("at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192");
    });

    it('TagKey longer than 128 and TagValue longer than 256', async () => {
      const k = await sdkFailure(
        h.kms.send(new CreateKeyCommand({ Tags: [{ TagKey: 't'.repeat(129), TagValue: 'v' }] })), 'ValidationException',
      );
      expect(k.message).toMatch(ONE_ERROR);
      expect(k.message).toContain("at 'tags.1.member.tagKey' failed to satisfy constraint: Member must have length less than or equal to 128");
      const v = await sdkFailure(
        h.kms.send(new CreateKeyCommand({ Tags: [{ TagKey: 'ok', TagValue: 'v'.repeat(257) }] })), 'ValidationException',
      );
      expect(v.message).toMatch(ONE_ERROR);
      expect(v.message).toContain("at 'tags.1.member.tagValue' failed to satisfy constraint: Member must have length less than or equal to 256");
    });

    it('Decrypt with a 6145-byte CiphertextBlob', async () => {
      const e = await sdkFailure(h.kms.send(new DecryptCommand({ CiphertextBlob: Buffer.alloc(6145, 1) })), 'ValidationException');
      expect(e.message).toMatch(
        /^1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length less than or equal to 6144$/,
      );
    });

    it('EncryptionContext larger than 8192 bytes in total', async () => {
      const EncryptionContext = { a: 'x'.repeat(4096), b: 'y'.repeat(4096) }; // 8194 bytes
      const e = await sdkFailure(
        h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: bytes('x'), EncryptionContext })), 'ValidationException',
      );
      expect(e.message).toMatch(ONE_ERROR);
      expect(e.message).toContain("'encryptionContext'");
      expect(e.message).not.toContain('x'.repeat(100));
    });

    it('ListKeys Limit 0 and 1001', async () => {
      const lo = await sdkFailure(h.kms.send(new ListKeysCommand({ Limit: 0 })), 'ValidationException');
      expect(lo.message).toMatch(ONE_ERROR);
      expect(lo.message).toContain("at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1");
      const hi = await sdkFailure(h.kms.send(new ListKeysCommand({ Limit: 1001 })), 'ValidationException');
      expect(hi.message).toMatch(ONE_ERROR);
      expect(hi.message).toContain("at 'limit' failed to satisfy constraint: Member must have value less than or equal to 1000");
    });

    it('a missing required member: "Member must not be null"', async () => {
      const res = await signedPost(h, op('DescribeKey'), '{}');
      const message = expectAwsError(res, 'ValidationException');
      expect(message).toBe(
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null",
      );
      const enc = await signedPost(h, op('Encrypt'), JSON.stringify({ Plaintext: 'aGk=' }));
      expect(expectAwsError(enc, 'ValidationException')).toContain("at 'keyId' failed to satisfy constraint: Member must not be null");
    });

    it('two errors at once: "2 validation errors detected:"', async () => {
      const res = await signedPost(h, op('Encrypt'), JSON.stringify({ KeyId: '' }));
      const message = expectAwsError(res, 'ValidationException');
      expect(message.startsWith('2 validation errors detected:')).toBe(true);
      expect(message).toContain("'keyId'");
      expect(message).toContain("'plaintext' failed to satisfy constraint: Member must not be null");
      expect(message.split('; ').length).toBe(2);
    });
  });

  describe('SerializationException and UnknownOperationException', () => {
    it('malformed JSON body', async () => {
      expectAwsError(await signedPost(h, op('Encrypt'), '{"KeyId": "abc", '), 'SerializationException');
      expectAwsError(await signedPost(h, op('ListKeys'), 'not json at all'), 'SerializationException');
    });

    it('a JSON array (or other non-object) body', async () => {
      expectAwsError(await signedPost(h, op('ListKeys'), '[]'), 'SerializationException');
      expectAwsError(await signedPost(h, op('DescribeKey'), JSON.stringify([{ KeyId: key.KeyId }])), 'SerializationException');
      expectAwsError(await signedPost(h, op('ListKeys'), '"a string"'), 'SerializationException');
      expectAwsError(await signedPost(h, op('ListKeys'), 'null'), 'SerializationException');
    });

    it('a member of the wrong JSON type', async () => {
      expectAwsError(await signedPost(h, op('Encrypt'), JSON.stringify({ KeyId: 5, Plaintext: 'aGk=' })), 'SerializationException');
      expectAwsError(await signedPost(h, op('ListKeys'), JSON.stringify({ Limit: '10' })), 'SerializationException');
      expectAwsError(
        await signedPost(h, op('Encrypt'), JSON.stringify({ KeyId: key.KeyId, Plaintext: 'aGk=', EncryptionContext: ['a'] })),
        'SerializationException',
      );
      expectAwsError(
        await signedPost(h, op('Encrypt'), JSON.stringify({ KeyId: key.KeyId, Plaintext: 'aGk=', DryRun: 'yes' })),
        'SerializationException',
      );
    });

    it('a Plaintext that is not valid base64', async () => {
      const res = await signedPost(h, op('Encrypt'), JSON.stringify({ KeyId: key.KeyId, Plaintext: 'not base64!!' }));
      const message = expectAwsError(res, 'SerializationException');
      expect(message).not.toContain('not base64!!');
    });

    it('an unknown operation', async () => {
      const message = expectAwsError(await signedPost(h, op('NoSuchThing'), '{}'), 'UnknownOperationException');
      expect(message).not.toContain(ADMIN.secretAccessKey);
      // Names inherited from Object.prototype are not operations either.
      expectAwsError(await signedPost(h, op('toString'), '{}'), 'UnknownOperationException');
      expectAwsError(await signedPost(h, op('__proto__'), '{}'), 'UnknownOperationException');
      expectAwsError(await signedPost(h, 'SomeOtherService.ListKeys', '{}'), 'UnknownOperationException');
    });

    it('a missing X-Amz-Target', async () => {
      expectAwsError(await signedPost(h, undefined, '{}'), 'UnknownOperationException');
    });
  });

  describe('SigV4 over HTTP', () => {
    const noSecret = (res: RawResponse) => {
      expect(res.text).not.toContain(ADMIN.secretAccessKey);
    };

    it('an unknown access key: UnrecognizedClientException', async () => {
      const other = client(h.endpoint, { accessKeyId: 'AKIAUNKNOWNKEY000000', secretAccessKey: 'aNoThErSeCrEt/p11kms+Example0123456789xyz' });
      const e = await sdkFailure(other.send(new ListKeysCommand({})), 'UnrecognizedClientException');
      expect(e.message).toBe('The security token included in the request is invalid.');
      expect(e.message).not.toContain(ADMIN.secretAccessKey);
      other.destroy();
      const raw = await signedPost(h, op('ListKeys'), '{}', {
        credentials: { accessKeyId: 'AKIAUNKNOWNKEY000000', secretAccessKey: 'aNoThErSeCrEt/p11kms+Example0123456789xyz' },
      });
      expectAwsError(raw, 'UnrecognizedClientException');
      noSecret(raw);
    });

    it('the right key with the wrong secret: InvalidSignatureException', async () => {
      const wrong = { accessKeyId: ADMIN.accessKeyId, secretAccessKey: 'wRoNgSeCrEt/p11kms+Example0123456789abc' };
      const other = client(h.endpoint, wrong);
      const e = await sdkFailure(other.send(new ListKeysCommand({})), 'InvalidSignatureException');
      expect(e.message).toContain('The request signature we calculated does not match the signature you provided.');
      expect(e.message).not.toContain(ADMIN.secretAccessKey);
      expect(e.message).not.toContain(wrong.secretAccessKey);
      other.destroy();
      const raw = await signedPost(h, op('ListKeys'), '{}', { credentials: wrong });
      expectAwsError(raw, 'InvalidSignatureException');
      noSecret(raw);
      expect(raw.text).not.toContain(wrong.secretAccessKey);
    });

    it('no Authorization header: MissingAuthenticationTokenException', async () => {
      const raw = await signedPost(h, op('ListKeys'), '{}', { authorization: null });
      expect(expectAwsError(raw, 'MissingAuthenticationTokenException')).toBe('Missing Authentication Token');
      noSecret(raw);
      // Entirely unsigned, too.
      const bare = await readResponse(
        await fetch(`${h.endpoint}/`, { method: 'POST', headers: { 'content-type': JSON_11, 'x-amz-target': op('ListKeys') }, body: '{}' }),
      );
      expectAwsError(bare, 'MissingAuthenticationTokenException');
    });

    it('a garbled Authorization header: IncompleteSignatureException', async () => {
      for (const authorization of [
        'AWS4-HMAC-SHA256 garbage',
        'AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/kms/aws4_request',
        'Bearer abc.def.ghi',
        'AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host;x-amz-date, Signature=nothex',
      ]) {
        const raw = await signedPost(h, op('ListKeys'), '{}', { authorization });
        expectAwsError(raw, 'IncompleteSignatureException');
        noSecret(raw);
      }
    });

    it('a request signed 10 minutes ago: InvalidSignatureException "Signature expired"', async () => {
      const raw = await signedPost(h, op('ListKeys'), '{}', { signingDate: new Date(Date.now() - 10 * 60 * 1000) });
      const message = expectAwsError(raw, 'InvalidSignatureException');
      expect(message).toMatch(/^Signature expired/);
      noSecret(raw);
    });

    it('a body modified after signing: InvalidSignatureException', async () => {
      const signedBody = JSON.stringify({ KeyId: key.KeyId, Plaintext: Buffer.from('pay alice 10').toString('base64') });
      const sentBody = JSON.stringify({ KeyId: key.KeyId, Plaintext: Buffer.from('pay mallory 1000').toString('base64') });
      const raw = await signedPost(h, op('Encrypt'), signedBody, { sendBody: sentBody });
      expectAwsError(raw, 'InvalidSignatureException');
      noSecret(raw);
      expect(raw.json.CiphertextBlob).toBeUndefined();
    });

    it("a credential scope with region 'eu-west-1': InvalidSignatureException", async () => {
      const raw = await signedPost(h, op('ListKeys'), '{}', { region: 'eu-west-1' });
      const message = expectAwsError(raw, 'InvalidSignatureException');
      expect(message).toMatch(/Credential should be scoped to a valid region/);
      noSecret(raw);
      const other = new KMSClient({ endpoint: h.endpoint, region: 'eu-west-1', credentials: ADMIN, maxAttempts: 1 });
      await sdkFailure(other.send(new ListKeysCommand({})), 'InvalidSignatureException');
      other.destroy();
    });

    it('a correctly signed raw request succeeds (the helper itself is sound)', async () => {
      const res = await signedPost(h, op('Encrypt'), JSON.stringify({ KeyId: key.KeyId, Plaintext: Buffer.from('hi').toString('base64') }));
      expect(res.status, res.text).toBe(200);
      expect(res.json.KeyId).toBe(key.Arn);
      const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: Buffer.from(res.json.CiphertextBlob, 'base64') }));
      expect(text(dec.Plaintext)).toBe('hi');
    });
  });

  describe('a rejected request changes nothing', () => {
    it('invalid CreateKey requests create no key', async () => {
      const before = await allKeyIds();
      expect(before.length).toBeGreaterThan(0);
      const attempts: Array<[CreateKeyCommandInput, string]> = [
        [{ Tags: [{ TagKey: 'aws:reserved', TagValue: 'x' }] }, 'TagException'],
        [{ Policy: 'this is not json {' }, 'MalformedPolicyDocumentException'],
        [{ KeySpec: 'ML_DSA_65', KeyUsage: 'SIGN_VERIFY' }, 'UnsupportedOperationException'],
        [{ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'SIGN_VERIFY' }, 'ValidationException'],
        // Custom key stores (issue #6): AWS_CLOUDHSM needs a CustomKeyStoreId; external key stores are not offered.
        [{ Origin: 'AWS_CLOUDHSM' }, 'ValidationException'],
        [{ Origin: 'EXTERNAL_KEY_STORE', XksKeyId: 'k1' }, 'UnsupportedOperationException'],
      ];
      for (const [input, name] of attempts) {
        await sdkFailure(h.kms.send(new CreateKeyCommand(input)), name);
      }
      expect(await allKeyIds()).toEqual(before);
    });

    it('an invalid UpdateKeyDescription leaves the description unchanged', async () => {
      const k = await newKey('original description');
      await sdkFailure(
        h.kms.send(new UpdateKeyDescriptionCommand({ KeyId: k.KeyId, Description: 'x'.repeat(8193) })), 'ValidationException',
      );
      expectAwsError(
        await signedPost(h, op('UpdateKeyDescription'), JSON.stringify({ KeyId: k.KeyId, Description: 42 })),
        'SerializationException',
      );
      expectAwsError(await signedPost(h, op('UpdateKeyDescription'), JSON.stringify({ KeyId: k.KeyId })), 'ValidationException');
      const meta = (await h.kms.send(new DescribeKeyCommand({ KeyId: k.KeyId }))).KeyMetadata!;
      expect(meta.Description).toBe('original description');
    });
  });

  describe('NotFoundException', () => {
    it('DescribeKey on a random UUID names the key ARN', async () => {
      const id = randomUUID();
      const e = await sdkFailure(h.kms.send(new DescribeKeyCommand({ KeyId: id })), 'NotFoundException');
      expect(e.message).toContain(`arn:aws:kms:${REGION}:${ACCOUNT}:key/${id}`);
      expect(e.message).toMatch(/does not exist/);
    });

    it("DescribeKey on 'alias/does-not-exist' names the alias ARN", async () => {
      const e = await sdkFailure(h.kms.send(new DescribeKeyCommand({ KeyId: 'alias/does-not-exist' })), 'NotFoundException');
      expect(e.message).toContain(`arn:aws:kms:${REGION}:${ACCOUNT}:alias/does-not-exist`);
    });

    it('DescribeKey on a malformed ARN names the ARN', async () => {
      for (const arn of [
        `arn:aws:kms:${REGION}:${ACCOUNT}:nothing/here`,
        `arn:aws:kms:${REGION}:12:key/${key.KeyId}`,
        'arn:aws:kms:garbage',
      ]) {
        const e = await sdkFailure(h.kms.send(new DescribeKeyCommand({ KeyId: arn })), 'NotFoundException');
        expect(e.message).toContain(arn);
      }
    });

    it('DescribeKey on an existing key ARN with another region names that region', async () => {
      // AWS answers "Invalid arn <region of the ARN>" (seen in nakedible/openssl-engine-kms#1:
      // "Invalid arn us-west-1"; kubernetes-retired/kube-aws#1041).
      const arn = key.Arn!.replace(`:${REGION}:`, ':eu-west-1:');
      expect(arn).not.toBe(key.Arn);
      const e = await sdkFailure(h.kms.send(new DescribeKeyCommand({ KeyId: arn })), 'NotFoundException');
      expect(e.message).toBe('Invalid arn eu-west-1');
    });
  });

  describe('DryRun', () => {
    it('Encrypt with DryRun true: DryRunOperationException (400) and no ciphertext', async () => {
      await sdkFailure(
        h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: bytes('dry'), DryRun: true })), 'DryRunOperationException', 400,
      );
      const raw = await signedPost(
        h, op('Encrypt'), JSON.stringify({ KeyId: key.KeyId, Plaintext: Buffer.from('dry').toString('base64'), DryRun: true }),
      );
      expectAwsError(raw, 'DryRunOperationException');
      expect(raw.json.CiphertextBlob).toBeUndefined();
      expect(raw.text).not.toContain('CiphertextBlob');
    });

    it('DryRun on a request that would fail reports the real failure instead', async () => {
      await sdkFailure(
        h.kms.send(new EncryptCommand({ KeyId: randomUUID(), Plaintext: bytes('dry'), DryRun: true })), 'NotFoundException',
      );
    });
  });

  describe('concurrency', () => {
    it('50 concurrent Encrypt calls on one key all succeed and round-trip', async () => {
      const kms = new KMSClient({
        endpoint: h.endpoint, region: REGION, credentials: ADMIN, maxAttempts: 1,
        requestHandler: { httpAgent: new Agent({ keepAlive: true, maxSockets: 100 }) },
      });
      try {
        const results = await Promise.allSettled(
          Array.from({ length: 50 }, (_, i) => kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: bytes(`message ${i}`) }))),
        );
        const failures = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
        expect(failures).toEqual([]);
        const decrypted = await Promise.all(
          results.map((r) => kms.send(new DecryptCommand({ CiphertextBlob: (r as PromiseFulfilledResult<{ CiphertextBlob?: Uint8Array }>).value.CiphertextBlob }))),
        );
        expect(decrypted.map((d) => text(d.Plaintext))).toEqual(Array.from({ length: 50 }, (_, i) => `message ${i}`));
      } finally {
        kms.destroy();
      }
    });
  });
});

describe('concurrency with P11KMS_MAX_SESSIONS=2', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { P11KMS_MAX_SESSIONS: '2' } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('300 concurrent Encrypt calls all succeed: requests wait for a session rather than failing', async () => {
    const key = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const kms = new KMSClient({
      endpoint: h.endpoint, region: REGION, credentials: ADMIN, maxAttempts: 1,
      requestHandler: { httpAgent: new Agent({ keepAlive: true, maxSockets: 400 }) },
    });
    let maxWaiting = 0;
    const sampler = setInterval(() => {
      maxWaiting = Math.max(maxWaiting, h.daemon.token.poolStats().waiting);
    }, 1);
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 300 }, (_, i) => kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: bytes(`m${i}`) }))),
      );
      const failures = results
        .filter((r) => r.status === 'rejected')
        .map((r) => `${(r as PromiseRejectedResult).reason?.name}: ${(r as PromiseRejectedResult).reason?.message}`);
      expect(failures).toEqual([]);
      // The load really exceeded the pool: some requests queued for a session.
      expect(maxWaiting).toBeGreaterThan(0);
      const stats = h.daemon.token.poolStats();
      expect(stats.max).toBe(2);
      expect(stats.size).toBeLessThanOrEqual(2);
      // Spot-check that what came back decrypts.
      const first = results[0] as PromiseFulfilledResult<{ CiphertextBlob?: Uint8Array }>;
      const dec = await kms.send(new DecryptCommand({ CiphertextBlob: first.value.CiphertextBlob }));
      expect(text(dec.Plaintext)).toBe('m0');
    } finally {
      clearInterval(sampler);
      kms.destroy();
    }
  });
});
