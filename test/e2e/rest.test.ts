/**
 * The REST door (src/api/rest) end to end: the real daemon, a real SoftHSM2 token, sidecar Unix
 * sockets (one for the account root, one for an IAM user whose identity policy decides), the
 * TCP listener with SigV4, and the audit trail. Every answer is checked against the daemon's
 * own OpenAPI document (test/helpers/rest.ts).
 */
import { CreateAliasCommand, CreateKeyCommand, DisableKeyCommand } from '@aws-sdk/client-kms';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from '../../src/cli/credentials.js';
import { ACCOUNT, ADMIN, REGION, startHarness, type Harness } from '../helpers/daemon.js';
import { policyDoc } from '../helpers/principals.js';
import { RestClient } from '../helpers/rest.js';

const execFileAsync = promisify(execFile);
let h: Harness;
let root: RestClient;
let app: RestClient;
let tcp: RestClient;
let rootSocket: string;
let appSocket: string;
let keyId: string;
let keyArn: string;
const APP_ARN = `arn:aws:iam::${ACCOUNT}:user/billing-app`;
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const OCTET = { 'content-type': 'application/octet-stream' };

beforeAll(async () => {
  h = await startHarness({
    prepare: (t) => {
      rootSocket = join(t.dir, 'sidecar.sock');
      appSocket = join(t.dir, 'billing.sock');
      const config = join(t.dir, 'config.json');
      writeFileSync(config, JSON.stringify({ sidecars: [{ path: appSocket, principal: APP_ARN, mode: '0660' }] }));
      return { P11KMS_SIDECAR_SOCKET: rootSocket, P11KMS_CONFIG: config };
    },
  });
  root = new RestClient({ socketPath: rootSocket });
  app = new RestClient({ socketPath: appSocket });
  tcp = new RestClient({ port: h.daemon.port });
  const key = await h.kms.send(new CreateKeyCommand({ Description: 'rest demo' }));
  keyId = key.KeyMetadata!.KeyId!;
  keyArn = key.KeyMetadata!.Arn!;
  await h.kms.send(new CreateAliasCommand({ AliasName: 'alias/demo', TargetKeyId: keyId }));
  await h.kms.send(new CreateAliasCommand({ AliasName: 'alias/team/db', TargetKeyId: keyId }));
});

afterAll(async () => {
  await h?.stop();
});

describe('OpenAPI document', () => {
  it('is OpenAPI 3.1, lists every route, and carries request schemas from the core (enums, base64, limits)', async () => {
    const doc = await root.document();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining([
      '/v1/keys/{key}/encrypt', '/v1/keys/{key}/decrypt', '/v1/keys/{key}/generate-data-key',
      '/v1/keys/{key}/generate-data-key-without-plaintext', '/v1/keys/{key}/re-encrypt', '/v1/keys/{key}/sign',
      '/v1/keys/{key}/verify', '/v1/keys/{key}/generate-mac', '/v1/keys/{key}/verify-mac', '/v1/keys/{key}/public-key',
      '/v1/random', '/v1/keys', '/v1/keys/{key}', '/v1/aliases', '/v1/openapi.json',
    ]));
    const enc = doc.components.schemas.EncryptRequest;
    expect(enc.required).toEqual(['plaintext']);
    expect(enc.additionalProperties).toBe(false);
    expect(enc.properties.plaintext).toMatchObject({ type: 'string', contentEncoding: 'base64' });
    expect(enc.properties.encryptionAlgorithm.enum).toContain('SYMMETRIC_DEFAULT');
    expect(doc.components.schemas.GenerateDataKeyRequest.properties.numberOfBytes).toMatchObject({ minimum: 1, maximum: 1024 });
    expect(doc.components.schemas.DecryptRequest.properties.recipient).toBeUndefined();
  });
});

describe('sidecar socket for the account root', () => {
  it('is created with mode 0600; the configured one with its own mode', () => {
    expect(statSync(rootSocket).mode & 0o777).toBe(0o600);
    expect(statSync(appSocket).mode & 0o777).toBe(0o660);
  });

  it('encrypts and decrypts JSON by alias name, key id, URL-encoded ARN and alias with a slash', async () => {
    for (const ref of ['demo', keyId, encodeURIComponent(keyArn), encodeURIComponent('team/db'), encodeURIComponent('alias/demo')]) {
      const enc = await root.post(`/v1/keys/${ref}/encrypt`, { plaintext: b64('4111 1111 1111 1111'), encryptionContext: { field: 'card' } });
      expect(enc.status).toBe(200);
      expect(enc.json).toMatchObject({ keyId: keyArn, encryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
      const dec = await root.post(`/v1/keys/${ref}/decrypt`, { ciphertextBlob: enc.json.ciphertextBlob, encryptionContext: { field: 'card' } });
      expect(dec.status).toBe(200);
      expect(Buffer.from(dec.json.plaintext, 'base64').toString()).toBe('4111 1111 1111 1111');
    }
  });

  it('takes and answers raw bytes with application/octet-stream, the encryption context as context.<name> parameters', async () => {
    const secret = Buffer.from([0, 1, 2, 255, 10, 13]);
    const enc = await root.post('/v1/keys/demo/encrypt?context.tenant=42', secret, OCTET);
    expect(enc.status).toBe(200);
    expect(enc.type).toBe('application/octet-stream');
    expect(enc.headers['kms-key-id']).toBe(keyArn);
    const dec = await root.post('/v1/keys/demo/decrypt?context.tenant=42', enc.raw, OCTET);
    expect(dec.status).toBe(200);
    expect(dec.raw.equals(secret)).toBe(true);
    const wrong = await root.post('/v1/keys/demo/decrypt?context.tenant=43', enc.raw, OCTET);
    expect(wrong.status).toBe(422);
    expect(wrong.type).toBe('application/problem+json');
    expect(wrong.json).toMatchObject({ title: 'InvalidCiphertextException', code: 'InvalidCiphertextException', status: 422 });
    // The JSON door decrypts what the raw door encrypted: same blob format.
    const viaJson = await root.post('/v1/keys/demo/decrypt', { ciphertextBlob: enc.raw.toString('base64'), encryptionContext: { tenant: '42' } });
    expect(Buffer.from(viaJson.json.plaintext, 'base64').equals(secret)).toBe(true);
  });

  it('serves data keys, re-encryption and random bytes', async () => {
    const dk = await root.post('/v1/keys/demo/generate-data-key', { keySpec: 'AES_256' });
    expect(dk.status).toBe(200);
    expect(Buffer.from(dk.json.plaintext, 'base64')).toHaveLength(32);
    const back = await root.post('/v1/keys/demo/decrypt', { ciphertextBlob: dk.json.ciphertextBlob });
    expect(back.json.plaintext).toBe(dk.json.plaintext);
    const dkw = await root.post('/v1/keys/demo/generate-data-key-without-plaintext', { numberOfBytes: 16 });
    expect(dkw.status).toBe(200);
    expect(dkw.json.plaintext).toBeUndefined();
    const other = await h.kms.send(new CreateKeyCommand({}));
    const re = await root.post(`/v1/keys/${other.KeyMetadata!.KeyId}/re-encrypt`, { ciphertextBlob: dkw.json.ciphertextBlob });
    expect(re.status).toBe(200);
    expect(re.json).toMatchObject({ sourceKeyId: keyArn, keyId: other.KeyMetadata!.Arn });
    const rnd = await root.post('/v1/random', { numberOfBytes: 24 });
    expect(Buffer.from(rnd.json.plaintext, 'base64')).toHaveLength(24);
  });

  it('signs and verifies, computes and verifies MACs, returns public keys', async () => {
    const signer = await h.kms.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }));
    const id = signer.KeyMetadata!.KeyId!;
    const message = b64('release 1.2.3');
    const sig = await root.post(`/v1/keys/${id}/sign`, { message, signingAlgorithm: 'ECDSA_SHA_256' });
    expect(sig.status).toBe(200);
    const ok = await root.post(`/v1/keys/${id}/verify`, { message, signature: sig.json.signature, signingAlgorithm: 'ECDSA_SHA_256' });
    expect(ok.json.signatureValid).toBe(true);
    const bad = await root.post(`/v1/keys/${id}/verify`, { message: b64('release 6.6.6'), signature: sig.json.signature, signingAlgorithm: 'ECDSA_SHA_256' });
    expect(bad.status).toBe(422);
    expect(bad.json.code).toBe('KMSInvalidSignatureException');
    const pub = await root.post(`/v1/keys/${id}/public-key`);
    expect(pub.status).toBe(200);
    expect(pub.json).toMatchObject({ keySpec: 'ECC_NIST_P256', keyUsage: 'SIGN_VERIFY', signingAlgorithms: ['ECDSA_SHA_256'] });
    const digest = createHash('sha256').update('release 1.2.3').digest();
    const byDigest = await root.post(`/v1/keys/${id}/verify`, {
      message: digest.toString('base64'), messageType: 'DIGEST', signature: sig.json.signature, signingAlgorithm: 'ECDSA_SHA_256',
    });
    expect(byDigest.json.signatureValid).toBe(true);

    const hmac = await h.kms.send(new CreateKeyCommand({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }));
    const hid = hmac.KeyMetadata!.KeyId!;
    const mac = await root.post(`/v1/keys/${hid}/generate-mac`, { message, macAlgorithm: 'HMAC_SHA_256' });
    expect(mac.status).toBe(200);
    const vm = await root.post(`/v1/keys/${hid}/verify-mac`, { message, mac: mac.json.mac, macAlgorithm: 'HMAC_SHA_256' });
    expect(vm.json.macValid).toBe(true);
    const vbad = await root.post(`/v1/keys/${hid}/verify-mac`, { message: b64('other'), mac: mac.json.mac, macAlgorithm: 'HMAC_SHA_256' });
    expect(vbad.json).toMatchObject({ status: 422, code: 'KMSInvalidMacException' });
    const sym = await root.post(`/v1/keys/demo/public-key`);
    expect(sym.json).toMatchObject({ status: 422, code: 'UnsupportedOperationException' });
  });

  it('lists keys and aliases and describes a key, with query parameters', async () => {
    const keys = await root.get('/v1/keys?limit=1');
    expect(keys.status).toBe(200);
    expect(keys.json.keys).toHaveLength(1);
    expect(keys.json.truncated).toBe(true);
    const next = await root.get(`/v1/keys?limit=100&marker=${encodeURIComponent(keys.json.nextMarker)}`);
    expect(next.json.keys.length).toBeGreaterThan(0);
    const described = await root.get('/v1/keys/demo');
    expect(described.json.keyMetadata).toMatchObject({ keyId, arn: keyArn, awsAccountId: ACCOUNT, keyState: 'Enabled', enabled: true });
    expect(described.json.keyMetadata.creationDate).toMatch(/^\d{4}-\d\d-\d\dT/);
    const aliases = await root.get(`/v1/aliases?keyId=${keyId}`);
    expect(aliases.json.aliases.map((a: { aliasName: string }) => a.aliasName).sort()).toEqual(['alias/demo', 'alias/team/db']);
  });

  it('answers errors as problem+json with REST statuses', async () => {
    const cases: [string, string, unknown, Record<string, string> | undefined, number, string][] = [
      ['POST', '/v1/keys/nope/encrypt', { plaintext: b64('x') }, undefined, 404, 'NotFoundException'],
      ['POST', '/v1/keys/demo/encrypt', {}, undefined, 422, 'ValidationException'],
      ['POST', '/v1/keys/demo/encrypt', { plaintext: b64('x'.repeat(4097)) }, undefined, 422, 'ValidationException'],
      ['POST', '/v1/keys/demo/encrypt', { plainText: b64('x') }, undefined, 400, 'SerializationException'],
      ['POST', '/v1/keys/demo/encrypt', { plaintext: 42 }, undefined, 400, 'SerializationException'],
      ['POST', '/v1/keys/demo/encrypt', { plaintext: b64('x'), keyId }, undefined, 400, 'SerializationException'],
      ['POST', '/v1/keys/demo/encrypt', Buffer.from('{"plaintext":'), { 'content-type': 'application/json' }, 400, 'SerializationException'],
      ['POST', '/v1/keys/demo/encrypt', Buffer.from('x'), { 'content-type': 'text/plain' }, 415, 'SerializationException'],
      ['POST', '/v1/keys/demo/generate-mac', Buffer.from('x'), OCTET, 415, 'SerializationException'],
      ['POST', '/v1/keys/demo/encrypt?dryRun=true', { plaintext: b64('x') }, undefined, 400, 'SerializationException'],
      ['POST', '/v1/keys/demo/encrypt', { plaintext: b64('x'), dryRun: true }, undefined, 412, 'DryRunOperationException'],
      ['POST', '/v1/keys/demo/sign', { message: b64('x'), signingAlgorithm: 'ECDSA_SHA_256' }, undefined, 422, 'InvalidKeyUsageException'],
      ['GET', '/v1/keys/demo/encrypt', undefined, undefined, 405, 'UnknownOperationException'],
      ['GET', '/v1/nothing-here', undefined, undefined, 404, 'UnknownOperationException'],
      ['POST', '/v1/keys/demo/decrypt', { ciphertextBlob: b64('not a ciphertext') }, undefined, 422, 'InvalidCiphertextException'],
      ['POST', '/v1/aliases', { aliasName: 'alias/demo', targetKeyId: keyId }, undefined, 409, 'AlreadyExistsException'],
      ['POST', '/v1/keys/demo/encrypt', Buffer.alloc(600 * 1024), OCTET, 413, 'ValidationException'],
      ['GET', '/v1/keys?limit=0', undefined, undefined, 422, 'ValidationException'],
      ['GET', '/v1/keys?bogus=1', undefined, undefined, 400, 'SerializationException'],
    ];
    for (const [method, path, body, headers, status, code] of cases) {
      const r = await root.call(method, path, body, headers);
      expect([path, r.status, r.type, r.json.code]).toEqual([path, status, 'application/problem+json', code]);
      expect(r.json).toMatchObject({ type: `urn:p11kms:problem:${code}`, title: code, status });
      expect(r.json.detail).not.toContain(b64('x'));
    }
    expect((await root.get('/v1/keys/demo/encrypt')).headers.allow).toBe('POST');
    const disabled = await h.kms.send(new CreateKeyCommand({}));
    await h.kms.send(new DisableKeyCommand({ KeyId: disabled.KeyMetadata!.KeyId }));
    const r = await root.post(`/v1/keys/${disabled.KeyMetadata!.KeyId}/encrypt`, { plaintext: b64('x') });
    expect([r.status, r.json.code]).toEqual([409, 'DisabledException']);
  });
});

describe('sidecar socket for an IAM user', () => {
  it('is refused until an identity policy allows it, exactly as a SigV4 caller would be', async () => {
    const denied = await app.post('/v1/keys/demo/encrypt', { plaintext: b64('x') });
    expect([denied.status, denied.json.code]).toEqual([403, 'AccessDeniedException']);
    expect(denied.json.detail).toContain(APP_ARN);
    await adminCall(h.daemon.socketPath, 'PutPrincipalPolicy', {
      PrincipalArn: APP_ARN,
      PolicyName: 'encrypt-only',
      PolicyDocument: policyDoc([{ Effect: 'Allow', Action: ['kms:Encrypt'], Resource: keyArn }]),
    });
    const enc = await app.post('/v1/keys/demo/encrypt', { plaintext: b64('x') });
    expect(enc.status).toBe(200);
    const dec = await app.post('/v1/keys/demo/decrypt', { ciphertextBlob: enc.json.ciphertextBlob });
    expect([dec.status, dec.json.code]).toEqual([403, 'AccessDeniedException']);
  });
});

describe('the REST routes on TCP', () => {
  it('need SigV4: unsigned is 401, signed is served as the signing principal', async () => {
    const unsigned = await tcp.post('/v1/keys/demo/encrypt', { plaintext: b64('x') });
    expect([unsigned.status, unsigned.json.code]).toEqual([401, 'MissingAuthenticationTokenException']);
    const body = JSON.stringify({ plaintext: b64('signed over tcp') });
    const signer = new SignatureV4({ service: 'kms', region: REGION, credentials: ADMIN, sha256: Sha256 });
    const host = `127.0.0.1:${h.daemon.port}`;
    const signed = await signer.sign(new HttpRequest({
      method: 'POST', protocol: 'http:', hostname: '127.0.0.1', port: h.daemon.port, path: '/v1/keys/demo/encrypt',
      headers: { host, 'content-type': 'application/json' }, body,
    }));
    const headers = Object.fromEntries(Object.entries(signed.headers).filter(([k]) => k.toLowerCase() !== 'host'));
    const ok = await tcp.post('/v1/keys/demo/encrypt', Buffer.from(body), { ...headers, 'content-type': 'application/json' });
    expect(ok.status).toBe(200);
    expect(ok.json.keyId).toBe(keyArn);
    // curl signs by itself (--aws-sigv4): a shell on another host needs no SDK either.
    // Asynchronously: the daemon answering it runs in this process.
    const curl = await execFileAsync('curl', [
      '-sS', '--aws-sigv4', `aws:amz:${REGION}:kms`, '--user', `${ADMIN.accessKeyId}:${ADMIN.secretAccessKey}`,
      '-H', 'Content-Type: application/json', '-d', body, `http://${host}/v1/keys/demo/encrypt`,
    ], { encoding: 'utf8', timeout: 20_000 });
    expect(JSON.parse(curl.stdout)).toMatchObject({ keyId: keyArn, encryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
    // The document needs no signature: it says nothing about any key.
    expect((await tcp.get('/v1/openapi.json')).status).toBe(200);
  });
});

describe('audit', () => {
  it('records REST calls with the principal and the socket, and never a plaintext', async () => {
    const marker = 'audited rest plaintext';
    await root.post('/v1/keys/demo/encrypt', { plaintext: b64(marker), encryptionContext: { audit: 'rest' } });
    await app.post('/v1/keys/demo/encrypt', { plaintext: b64(marker) });
    const dir = h.config.audit.dir;
    const text = readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort().map((f) => readFileSync(join(dir, f), 'utf8')).join('');
    expect(text).not.toContain(b64(marker));
    const events = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.additionalEventData?.frontDoor === 'rest');
    const rootEvent = events.find((e) => e.additionalEventData.socket === rootSocket && e.requestParameters?.encryptionContext?.audit === 'rest');
    expect(rootEvent).toMatchObject({ eventName: 'Encrypt', userIdentity: { type: 'Root', arn: `arn:aws:iam::${ACCOUNT}:root` } });
    const appEvent = events.filter((e) => e.additionalEventData.socket === appSocket).at(-1);
    expect(appEvent).toMatchObject({ eventName: 'Encrypt', userIdentity: { type: 'IAMUser', arn: APP_ARN, principalId: APP_ARN } });
    expect(appEvent.userIdentity.accessKeyId).toBeUndefined();
    expect(events.some((e) => e.errorCode === 'AccessDeniedException' && e.additionalEventData.socket === appSocket)).toBe(true);
  });

  it('checked every answer of this file against the OpenAPI document', () => {
    expect(root.checked + app.checked + tcp.checked).toBeGreaterThan(50);
  });
});
