/**
 * The XKS proxy front door (AWS KMS External Key Store Proxy API v1) as AWS KMS sees it: a real
 * HTTPS listener with a certificate made at test time, requests signed with
 * @smithy/signature-v4 for service kms-xks-proxy, every operation, every error of the spec's
 * table that can be provoked, rotation-safe decrypt, tampering, mutual TLS, secondary
 * authorization, and the daemon wiring (config file + environment, development mode).
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CreateAliasCommand, CreateKeyCommand, DisableKeyCommand, EnableKeyCommand, PutKeyPolicyCommand, RotateKeyOnDemandCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { XksConfig } from '../../src/api/xks/config.js';
import { startXksServer, type XksAuditEvent, type XksServer } from '../../src/api/xks/server.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { Secret } from '../../src/secret.js';
import { ACCOUNT, startHarness, type Harness } from '../helpers/daemon.js';
import {
  b64, closeAgents, CRED_A1, CRED_A2, CRED_B1, expectedCdiv, keyMeta, makeTlsMaterial, unb64, xksCall,
  type TlsMaterial, type XksCallOptions, type XksTarget,
} from '../helpers/xks.js';

let h: Harness;
let tls: TlsMaterial;
let main: XksServer;
let target: XksTarget;
const audit: XksAuditEvent[] = [];
const keys: Record<string, string> = {};

const secret = (s: string) => new Secret(s);
const cred = (c: { accessKeyId: string; secretAccessKey: string }) => ({ accessKeyId: c.accessKeyId, secretAccessKey: secret(c.secretAccessKey) });
const bind = (externalKeyId: string, keyRef: string, allowEncrypt = true, allowDecrypt = true) => ({ externalKeyId, keyRef, allowEncrypt, allowDecrypt });

async function newKey(alias?: string): Promise<string> {
  const id = (await h.kms.send(new CreateKeyCommand({ Description: 'xks' }))).KeyMetadata!.KeyId!;
  if (alias) await h.kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: id }));
  return id;
}

function baseConfig(over: Partial<XksConfig> = {}): XksConfig {
  return {
    host: '127.0.0.1',
    port: 0,
    insecureHttp: false,
    tls: { cert: tls.serverCert, key: secret(tls.serverKey) },
    healthKey: keys.health,
    healthCacheMs: 30_000,
    secondaryAuthorization: false,
    uriPrefixes: [
      {
        prefix: '/tenant-a',
        credentials: [cred(CRED_A1), cred(CRED_A2)],
        keys: [
          bind(keys.main!, keys.main!),
          bind('foo', 'alias/xks-foo'),
          bind('encrypt_only_key', keys.main!, true, false),
          bind('decrypt_only_key', keys.main!, false, true),
          bind('impotent_key', keys.main!, false, false),
          bind('toggled', keys.toggled!),
          bind('rotating', keys.rotating!),
          bind('broken', keys.broken!),
          bind('dangling', 'alias/does-not-exist'),
        ],
      },
      { prefix: '/tenant/b', credentials: [cred(CRED_B1)], keys: [bind('foo', keys.other!)] },
    ],
    ...over,
  };
}

beforeAll(() => {
  tls = makeTlsMaterial();
});
afterAll(() => {
  closeAgents();
  tls?.cleanup();
});

const A = '/tenant-a/kms/xks/v1';
const call = (path: string, body: unknown, opts?: XksCallOptions) => xksCall(target, path, body, opts);
const encrypt = (key: string, body: Record<string, unknown>, opts?: XksCallOptions) =>
  call(`${A}/keys/${key}/encrypt`, { requestMetadata: keyMeta('Encrypt'), encryptionAlgorithm: 'AES_GCM', ...body }, opts);
const decrypt = (key: string, body: Record<string, unknown>, opts?: XksCallOptions) =>
  call(`${A}/keys/${key}/decrypt`, { requestMetadata: keyMeta('Decrypt'), encryptionAlgorithm: 'AES_GCM', ...body }, opts);
/** The fields of an Encrypt answer that Decrypt takes back. */
const sealedOf = (json: Record<string, string>): Record<'ciphertext' | 'initializationVector' | 'authenticationTag' | 'ciphertextMetadata', string> => ({
  ciphertext: json.ciphertext!,
  initializationVector: json.initializationVector!,
  authenticationTag: json.authenticationTag!,
  ciphertextMetadata: json.ciphertextMetadata!,
});
const expectError = (r: { status: number; json: { errorName?: string; errorMessage?: string } }, status: number, errorName: string) => {
  expect({ status: r.status, errorName: r.json?.errorName }).toEqual({ status, errorName });
  expect(r.json.errorMessage ?? '').toMatch(/^[\x20-\x7e]{0,511}$/);
};

// One PKCS#11 module per process: the harnesses of this file run one after the other.
describe('XKS proxy over HTTPS (front door started on the harness\'s core)', () => {
  beforeAll(async () => {
    h = await startHarness();
    keys.main = await newKey();
    keys.foo = await newKey('alias/xks-foo');
    keys.other = await newKey();
    keys.toggled = await newKey();
    keys.rotating = await newKey();
    keys.broken = await newKey();
    keys.health = await newKey();
    main = await startXksServer({
      deps: h.daemon.deps, config: baseConfig(), accountId: ACCOUNT, clock: systemClock, log: silentLogger,
      onAudit: (e) => audit.push(e),
    });
    target = { scheme: 'https', port: main.port, ca: tls.caCert };
  });

  afterAll(async () => {
    closeAgents();
    await main?.stop();
    await h?.stop();
  });

  describe('GetHealthStatus', () => {
    it('answers a deep check with the spec shape, cached between calls', async () => {
      const spy = vi.spyOn(h.daemon.deps.token, 'seal');
      const body = { requestMetadata: { kmsRequestId: 'h-1', kmsOperation: 'KmsHealthCheck' } };
      const r = await call(`${A}/health`, body);
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.json).toMatchObject({ xksProxyFleetSize: 1, xksProxyVendor: 'p11kms', ekmVendor: expect.any(String) });
      expect(r.json.xksProxyModel).toMatch(/p11kms/);
      expect(r.json.ekmFleetDetails).toEqual([{ id: h.token.label, model: expect.any(String), healthStatus: 'ACTIVE' }]);
      const calls = spy.mock.calls.length;
      expect(calls).toBe(1); // the health key's round trip
      expect((await call(`${A}/health`, body)).status).toBe(200);
      expect(spy.mock.calls.length).toBe(calls); // cached
      spy.mockRestore();
    });

    it('refuses a missing or empty requestMetadata', async () => {
      expectError(await call(`${A}/health`, {}), 400, 'ValidationException');
      expectError(await call(`${A}/health`, { requestMetadata: {} }), 400, 'ValidationException');
    });
  });

  describe('GetKeyMetadata', () => {
    it('describes a key by its key id and by a configured label (alias)', async () => {
      for (const id of [keys.main!, 'foo']) {
        const r = await call(`${A}/keys/${id}/metadata`, { requestMetadata: keyMeta('DescribeKey') });
        expect(r.status).toBe(200);
        expect(r.json).toEqual({ keySpec: 'AES_256', keyUsage: ['ENCRYPT', 'DECRYPT'], keyStatus: 'ENABLED' });
      }
      // CreateKey sends no kmsKeyArn.
      const { kmsKeyArn: _, ...createMeta } = keyMeta('CreateKey');
      expect((await call(`${A}/keys/foo/metadata`, { requestMetadata: createMeta })).status).toBe(200);
    });

    it('reports the configured usage of encrypt-only, decrypt-only and impotent keys', async () => {
      const usage = async (id: string) => (await call(`${A}/keys/${id}/metadata`, { requestMetadata: keyMeta('DescribeKey') })).json.keyUsage;
      expect(await usage('encrypt_only_key')).toEqual(['ENCRYPT']);
      expect(await usage('decrypt_only_key')).toEqual(['DECRYPT']);
      expect(await usage('impotent_key')).toEqual([]);
    });

    it('keyStatus follows the daemon key state', async () => {
      const status = async () => (await call(`${A}/keys/toggled/metadata`, { requestMetadata: keyMeta('DescribeKey') })).json.keyStatus;
      await h.kms.send(new DisableKeyCommand({ KeyId: keys.toggled }));
      expect(await status()).toBe('DISABLED');
      await h.kms.send(new EnableKeyCommand({ KeyId: keys.toggled }));
      expect(await status()).toBe('ENABLED');
    });

    it('KeyNotFoundException for unknown ids, ids of another prefix, and dangling aliases', async () => {
      const meta = { requestMetadata: keyMeta('DescribeKey') };
      expectError(await call(`${A}/keys/non_existing_key/metadata`, meta), 404, 'KeyNotFoundException');
      // Configured for /tenant/b only.
      expectError(await call(`${A}/keys/${keys.other}/metadata`, meta), 404, 'KeyNotFoundException');
      // A daemon key that exists but is not configured for any prefix.
      expectError(await call(`${A}/keys/${keys.health}/metadata`, meta), 404, 'KeyNotFoundException');
      expectError(await call(`${A}/keys/dangling/metadata`, meta), 404, 'KeyNotFoundException');
    });

    it('ValidationException for missing requestMetadata, empty requestMetadata, or a missing required member', async () => {
      expectError(await call(`${A}/keys/foo/metadata`, {}), 400, 'ValidationException');
      expectError(await call(`${A}/keys/foo/metadata`, { requestMetadata: {} }), 400, 'ValidationException');
      const { awsPrincipalArn: _, ...noPrincipal } = keyMeta('DescribeKey');
      const r = await call(`${A}/keys/foo/metadata`, { requestMetadata: noPrincipal });
      expectError(r, 400, 'ValidationException');
      expect(r.json.errorMessage).toMatch(/awsPrincipalArn/);
      expectError(await call(`${A}/keys/foo/metadata`, '{"requestMetadata":'), 400, 'ValidationException');
      expectError(await call(`${A}/keys/foo/metadata`, '[]'), 400, 'ValidationException');
    });

    it('accepts kmsOperation values it does not know (spec: MUST NOT reject)', async () => {
      expect((await call(`${A}/keys/foo/metadata`, { requestMetadata: keyMeta('BulkDescribeKey') })).status).toBe(200);
    });
  });

  describe('Encrypt / Decrypt', () => {
    it('round-trips without AAD; ciphertext length = plaintext length, 12-byte IV, 16-byte tag, our 5-byte metadata', async () => {
      const plaintext = Buffer.from('Hello World!');
      const e = await encrypt('foo', { plaintext: b64(plaintext) });
      expect(e.status).toBe(200);
      expect(Object.keys(e.json).sort()).toEqual(['authenticationTag', 'ciphertext', 'ciphertextMetadata', 'initializationVector']);
      expect(unb64(e.json.ciphertext).length).toBe(plaintext.length);
      expect(unb64(e.json.initializationVector).length).toBe(12);
      expect(unb64(e.json.authenticationTag).length).toBe(16);
      expect([...unb64(e.json.ciphertextMetadata)]).toEqual([1, 0, 0, 0, 1]);
      const d = await decrypt('foo', sealedOf(e.json));
      expect(d.status).toBe(200);
      expect(d.json).toEqual({ plaintext: b64(plaintext) });
    });

    it('round-trips with AAD and returns a correct ciphertextDataIntegrityValue (Appendix C)', async () => {
      const aad = Buffer.from('project=nile,department=marketing');
      for (const withAad of [true, false]) {
        const e = await encrypt(keys.main!, {
          plaintext: b64('Hello World!'),
          ...(withAad ? { additionalAuthenticatedData: b64(aad) } : {}),
          ciphertextDataIntegrityValueAlgorithm: 'SHA_256',
        });
        expect(e.status).toBe(200);
        expect(e.json.ciphertextDataIntegrityValue).toBe(expectedCdiv(withAad ? aad : undefined, e.json));
        const d = await decrypt(keys.main!, { ...sealedOf(e.json), ...(withAad ? { additionalAuthenticatedData: b64(aad) } : {}) });
        expect(d.json).toEqual({ plaintext: b64('Hello World!') });
      }
    });

    it('does the verification decrypt only when a CDIV is asked for', async () => {
      const spy = vi.spyOn(h.daemon.deps.token, 'decryptGcm');
      await encrypt('foo', { plaintext: b64('x') });
      expect(spy).not.toHaveBeenCalled();
      await encrypt('foo', { plaintext: b64('x'), ciphertextDataIntegrityValueAlgorithm: 'SHA_256' });
      expect(spy).toHaveBeenCalledTimes(1);
      spy.mockRestore();
    });

    it('handles the spec minimums: 4300 bytes of plaintext with 8192 bytes of AAD', async () => {
      const plaintext = Buffer.alloc(4300, 0xa5);
      const aad = Buffer.alloc(8192, 0x5a);
      const e = await encrypt('foo', { plaintext: b64(plaintext), additionalAuthenticatedData: b64(aad), ciphertextDataIntegrityValueAlgorithm: 'SHA_256' });
      expect(e.status).toBe(200);
      const d = await decrypt('foo', { ...sealedOf(e.json), additionalAuthenticatedData: b64(aad) });
      expect(unb64(d.json.plaintext).equals(plaintext)).toBe(true);
    });

    it('UnsupportedOperationException above our limits (8192 bytes of plaintext or AAD)', async () => {
      expectError(await encrypt('foo', { plaintext: b64(Buffer.alloc(8193)) }), 501, 'UnsupportedOperationException');
      expectError(await encrypt('foo', { plaintext: b64('x'), additionalAuthenticatedData: b64(Buffer.alloc(8193)) }), 501, 'UnsupportedOperationException');
      expectError(await decrypt('foo', { ciphertext: b64(Buffer.alloc(8193)), initializationVector: b64(Buffer.alloc(12)), authenticationTag: b64(Buffer.alloc(16)) }), 501, 'UnsupportedOperationException');
      expectError(await encrypt('foo', { plaintext: 'A'.repeat(70_000) }), 501, 'UnsupportedOperationException');
    });

    it('ValidationException for missing, malformed or unsupported members', async () => {
      expectError(await encrypt('foo', {}), 400, 'ValidationException'); // missing plaintext
      expectError(await encrypt('foo', { plaintext: 'not base64!' }), 400, 'ValidationException');
      expectError(await encrypt('foo', { plaintext: 'SGVsbG8' }), 400, 'ValidationException'); // unpadded
      expectError(await encrypt('foo', { plaintext: '' }), 400, 'ValidationException');
      expectError(await encrypt('foo', { plaintext: b64('x'), encryptionAlgorithm: 'AES_CBC' }), 400, 'ValidationException');
      expectError(await encrypt('foo', { plaintext: b64('x'), ciphertextDataIntegrityValueAlgorithm: 'MD5' }), 400, 'ValidationException');
      expectError(await encrypt('foo', { plaintext: 42 }), 400, 'ValidationException');
      const { kmsKeyArn: _, ...noKeyArn } = keyMeta('Encrypt');
      expectError(await encrypt('foo', { requestMetadata: noKeyArn, plaintext: b64('x') }), 400, 'ValidationException');
      expectError(await decrypt('foo', { initializationVector: b64(Buffer.alloc(12)), authenticationTag: b64(Buffer.alloc(16)) }), 400, 'ValidationException');
      expectError(
        await decrypt('foo', { ciphertext: b64('x'), initializationVector: b64(Buffer.alloc(12)), authenticationTag: b64(Buffer.alloc(16)), ciphertextMetadata: b64(Buffer.alloc(21)) }),
        400, 'ValidationException',
      );
    });

    describe('tampering is InvalidCiphertextException', () => {
      const aad = Buffer.from('project=nile,department=marketing');
      let sealed: ReturnType<typeof sealedOf>;
      beforeAll(async () => {
        sealed = sealedOf((await encrypt('foo', { plaintext: b64('attack at dawn'), additionalAuthenticatedData: b64(aad) })).json);
        expect((await decrypt('foo', { ...sealed, additionalAuthenticatedData: b64(aad) })).status).toBe(200);
      });
      const flip = (s: string, i = 0) => {
        const b = unb64(s);
        b[i] = (b[i] as number) ^ 1;
        return b64(b);
      };
      const cases: [string, () => Record<string, unknown>][] = [
        ['a flipped ciphertext bit', () => ({ ...sealed, ciphertext: flip(sealed.ciphertext), additionalAuthenticatedData: b64(aad) })],
        ['a flipped tag bit', () => ({ ...sealed, authenticationTag: flip(sealed.authenticationTag, 15), additionalAuthenticatedData: b64(aad) })],
        ['a flipped IV bit', () => ({ ...sealed, initializationVector: flip(sealed.initializationVector), additionalAuthenticatedData: b64(aad) })],
        ['a different AAD', () => ({ ...sealed, additionalAuthenticatedData: b64('project=blue,department=finance') })],
        ['a missing AAD', () => ({ ...sealed })],
        ['an empty AAD', () => ({ ...sealed, additionalAuthenticatedData: '' })],
        ['a missing ciphertextMetadata', () => ({ ...sealed, ciphertextMetadata: undefined, additionalAuthenticatedData: b64(aad) })],
        ['ciphertextMetadata naming another version', () => ({ ...sealed, ciphertextMetadata: b64(Buffer.from([1, 0, 0, 0, 2])), additionalAuthenticatedData: b64(aad) })],
        ['ciphertextMetadata of an unknown format', () => ({ ...sealed, ciphertextMetadata: flip(sealed.ciphertextMetadata), additionalAuthenticatedData: b64(aad) })],
        ['a 16-byte IV', () => ({ ...sealed, initializationVector: b64(Buffer.alloc(16)), additionalAuthenticatedData: b64(aad) })],
        ['an 11-byte IV', () => ({ ...sealed, initializationVector: b64(Buffer.alloc(11)), additionalAuthenticatedData: b64(aad) })],
        ['a 15-byte tag', () => ({ ...sealed, authenticationTag: b64(unb64(sealed.authenticationTag).subarray(0, 15)), additionalAuthenticatedData: b64(aad) })],
        ['a truncated ciphertext', () => ({ ...sealed, ciphertext: b64(unb64(sealed.ciphertext).subarray(1)), additionalAuthenticatedData: b64(aad) })],
      ];
      for (const [name, body] of cases) {
        it(name, async () => expectError(await decrypt('foo', body()), 400, 'InvalidCiphertextException'));
      }

      it('the metadata moved into the AAD field (the length prefixes keep them apart)', async () => {
        const e = (await encrypt('foo', { plaintext: b64('no aad') })).json;
        const moved = { ...sealedOf(e), ciphertextMetadata: undefined, additionalAuthenticatedData: e.ciphertextMetadata };
        expectError(await decrypt('foo', moved), 400, 'InvalidCiphertextException');
      });

      it('a ciphertext of another key', async () => {
        const e = (await encrypt(keys.main!, { plaintext: b64('x') })).json;
        expectError(await decrypt('foo', sealedOf(e)), 400, 'InvalidCiphertextException');
      });
    });

    it('InvalidKeyUsageException for encrypt-only, decrypt-only and impotent keys (and CDIV needs decrypt)', async () => {
      const e = await encrypt('encrypt_only_key', { plaintext: b64('x') });
      expect(e.status).toBe(200);
      expectError(await decrypt('encrypt_only_key', sealedOf(e.json)), 400, 'InvalidKeyUsageException');
      expectError(await encrypt('encrypt_only_key', { plaintext: b64('x'), ciphertextDataIntegrityValueAlgorithm: 'SHA_256' }), 400, 'InvalidKeyUsageException');
      expectError(await encrypt('decrypt_only_key', { plaintext: b64('x') }), 400, 'InvalidKeyUsageException');
      // The same key material: what the encrypt-only binding sealed, the decrypt-only binding opens.
      expect((await decrypt('decrypt_only_key', sealedOf(e.json))).json.plaintext).toBe(b64('x'));
      expectError(await encrypt('impotent_key', { plaintext: b64('x') }), 400, 'InvalidKeyUsageException');
      expectError(await decrypt('impotent_key', sealedOf(e.json)), 400, 'InvalidKeyUsageException');
    });

    it('InvalidStateException while the daemon key is disabled', async () => {
      const e = await encrypt('toggled', { plaintext: b64('x') });
      await h.kms.send(new DisableKeyCommand({ KeyId: keys.toggled }));
      try {
        expectError(await encrypt('toggled', { plaintext: b64('x') }), 400, 'InvalidStateException');
        expectError(await decrypt('toggled', sealedOf(e.json)), 400, 'InvalidStateException');
      } finally {
        await h.kms.send(new EnableKeyCommand({ KeyId: keys.toggled }));
      }
      expect((await decrypt('toggled', sealedOf(e.json))).status).toBe(200);
    });

    it('decrypts ciphertexts of every key-material version after rotation', async () => {
      const aad = b64('ctx');
      const v1 = (await encrypt('rotating', { plaintext: b64('made under v1'), additionalAuthenticatedData: aad })).json;
      await rotate(keys.rotating!);
      const v2 = (await encrypt('rotating', { plaintext: b64('made under v2'), additionalAuthenticatedData: aad, ciphertextDataIntegrityValueAlgorithm: 'SHA_256' })).json;
      expect([...unb64(v1.ciphertextMetadata)]).toEqual([1, 0, 0, 0, 1]);
      expect([...unb64(v2.ciphertextMetadata)]).toEqual([1, 0, 0, 0, 2]);
      expect((await decrypt('rotating', { ...sealedOf(v1), additionalAuthenticatedData: aad })).json.plaintext).toBe(b64('made under v1'));
      expect((await decrypt('rotating', { ...sealedOf(v2), additionalAuthenticatedData: aad })).json.plaintext).toBe(b64('made under v2'));
      // Metadata swapped between the two: the version is authenticated.
      expectError(await decrypt('rotating', { ...sealedOf(v1), ciphertextMetadata: v2.ciphertextMetadata, additionalAuthenticatedData: aad }), 400, 'InvalidCiphertextException');
    });

    it('InternalException when the key material has gone from the token', async () => {
      const material = h.daemon.deps.store.getMaterial(keys.broken!, 1)!;
      await h.daemon.deps.token.destroy(material.objectId);
      expectError(await encrypt('broken', { plaintext: b64('x') }), 500, 'InternalException');
    });
  });

  /** On-demand rotation through the daemon's own KMS API (new key material, made current). */
  async function rotate(keyId: string): Promise<void> {
    await h.kms.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
  }

  describe('routing and authentication', () => {
    it('both credentials of a prefix work; another prefix\'s credential does not', async () => {
      for (const creds of [CRED_A1, CRED_A2]) {
        expect((await encrypt('foo', { plaintext: b64('x') }, { creds })).status).toBe(200);
      }
      expectError(await encrypt('foo', { plaintext: b64('x') }, { creds: CRED_B1 }), 401, 'AuthenticationFailedException');
      const b = await xksCall(target, '/tenant/b/kms/xks/v1/keys/foo/metadata', { requestMetadata: keyMeta('DescribeKey') }, { creds: CRED_B1 });
      expect(b.status).toBe(200);
      // The same external key id names another daemon key under /tenant/b.
      const sealed = (await encrypt('foo', { plaintext: b64('x') })).json;
      const other = await xksCall(target, '/tenant/b/kms/xks/v1/keys/foo/decrypt',
        { requestMetadata: keyMeta('Decrypt'), encryptionAlgorithm: 'AES_GCM', ...sealedOf(sealed) }, { creds: CRED_B1 });
      expectError(other, 400, 'InvalidCiphertextException');
    });

    it('AuthenticationFailedException for a wrong secret, an unknown key id, no signature, another service, a stale date, or a changed body', async () => {
      const body = { plaintext: b64('x') };
      expectError(await encrypt('foo', body, { creds: { ...CRED_A1, secretAccessKey: `Invalid${CRED_A1.secretAccessKey}` } }), 401, 'AuthenticationFailedException');
      expectError(await encrypt('foo', body, { creds: { ...CRED_A1, accessKeyId: `INVALID${CRED_A1.accessKeyId}` } }), 401, 'AuthenticationFailedException');
      expectError(await encrypt('foo', body, { creds: null }), 401, 'AuthenticationFailedException');
      expectError(await encrypt('foo', body, { service: 'kms' }), 401, 'AuthenticationFailedException');
      expectError(await encrypt('foo', body, { signingDate: new Date(Date.now() - 10 * 60_000) }), 401, 'AuthenticationFailedException');
      const signed = JSON.stringify({ requestMetadata: keyMeta('Encrypt'), encryptionAlgorithm: 'AES_GCM', plaintext: b64('x') });
      expectError(await call(`${A}/keys/foo/encrypt`, signed, { sendBody: signed.replace(b64('x'), b64('y')) }), 401, 'AuthenticationFailedException');
    });

    it('accepts the region KMS signs with', async () => {
      expect((await encrypt('foo', { plaintext: b64('x') }, { region: 'eu-west-1' })).status).toBe(200);
      expectError(await encrypt('foo', { plaintext: b64('x') }, { region: 'Not_A_Region' }), 401, 'AuthenticationFailedException');
    });

    it('InvalidUriPathException for unknown prefixes and paths (before authentication)', async () => {
      const meta = { requestMetadata: keyMeta('DescribeKey') };
      expectError(await call('/tenant-a/invalid/kms/xks/v1/keys/foo/metadata', meta), 404, 'InvalidUriPathException');
      expectError(await call('/kms/xks/v1/keys/foo/metadata', meta), 404, 'InvalidUriPathException');
      expectError(await call(`${A}/keys/foo/rotate`, meta), 404, 'InvalidUriPathException');
      expectError(await call(`${A}/keys/foo/metadata/extra`, meta), 404, 'InvalidUriPathException');
      expectError(await call(`${A}/keys//metadata`, meta), 404, 'InvalidUriPathException');
      expectError(await call(`${A}/healthz`, meta), 404, 'InvalidUriPathException');
      expectError(await call('/', meta, { creds: null }), 404, 'InvalidUriPathException');
    });

    it('405 Method Not Allowed for GET (and other methods) on the operation URIs', async () => {
      for (const path of [`${A}/health`, `${A}/keys/foo/metadata`, `${A}/keys/foo/encrypt`, `${A}/keys/foo/decrypt`]) {
        const r = await call(path, '', { method: 'GET', creds: null });
        expect(r.status).toBe(405);
        expect(r.headers.allow).toBe('POST');
      }
      expect((await call(`${A}/keys/foo/encrypt`, '', { method: 'PUT' })).status).toBe(405);
    });

    it('writes requestMetadata to the audit hook, never plaintext', async () => {
      audit.length = 0;
      const meta = keyMeta('GenerateDataKey', { kmsRequestId: 'audit-me-1', futureField: 'kept' });
      const secretText = 'never-in-the-audit-trail';
      const r = await call(`${A}/keys/foo/encrypt`, { requestMetadata: meta, encryptionAlgorithm: 'AES_GCM', plaintext: b64(secretText) });
      expect(r.status).toBe(200);
      await encrypt('foo', { plaintext: b64('x') }, { creds: { ...CRED_A1, secretAccessKey: `x${CRED_A1.secretAccessKey}` } });
      expect(audit).toHaveLength(2);
      expect(audit[0]).toMatchObject({
        operation: 'Encrypt', uriPrefix: '/tenant-a', externalKeyId: 'foo', keyId: keys.foo, accessKeyId: CRED_A1.accessKeyId,
        requestMetadata: meta, status: 200,
      });
      expect(audit[0]!.durationMs).toBeGreaterThan(0);
      expect(audit[1]).toMatchObject({ operation: 'Encrypt', status: 401, errorName: 'AuthenticationFailedException' });
      const text = JSON.stringify(audit);
      expect(text).not.toContain(secretText);
      expect(text).not.toContain(b64(secretText));
      expect(text).not.toContain(CRED_A1.secretAccessKey);
    });
  });

  describe('mutual TLS and region allow-list', () => {
    let mtls: XksServer;
    beforeAll(async () => {
      mtls = await startXksServer({
        deps: h.daemon.deps,
        config: baseConfig({
          tls: { cert: tls.serverCert, key: secret(tls.serverKey), clientCa: tls.caCert, clientSubjectNames: ['cks.kms.us-east-1.amazonaws.com'] },
          regions: ['us-east-1'],
        }),
        accountId: ACCOUNT, clock: systemClock, log: silentLogger,
      });
    });
    afterAll(() => mtls?.stop());
    const health = { requestMetadata: { kmsRequestId: 'm-1', kmsOperation: 'KmsHealthCheck' } };

    it('serves a client with a certificate from the configured CA and subject', async () => {
      const t = { scheme: 'https' as const, port: mtls.port, ca: tls.caCert, client: tls.kmsClient };
      expect((await xksCall(t, `${A}/health`, health)).status).toBe(200);
      expectError(await xksCall(t, `${A}/health`, health, { region: 'eu-west-1' }), 401, 'AuthenticationFailedException');
    });

    it('drops clients without a certificate, with another subject, or from another CA', async () => {
      for (const client of [undefined, tls.otherClient, tls.strangerClient]) {
        await expect(xksCall({ scheme: 'https', port: mtls.port, ca: tls.caCert, client }, `${A}/health`, health)).rejects.toThrow();
      }
    });
  });

  describe('secondary authorization', () => {
    let authz: XksServer;
    let t: XksTarget;
    beforeAll(async () => {
      authz = await startXksServer({
        deps: h.daemon.deps, config: baseConfig({ secondaryAuthorization: true }), accountId: ACCOUNT, clock: systemClock, log: silentLogger,
      });
      t = { scheme: 'https', port: authz.port, ca: tls.caCert };
    });
    afterAll(() => authz?.stop());
    const root = `arn:aws:iam::${ACCOUNT}:root`;
    const enc = (meta: Record<string, string>) =>
      xksCall(t, `${A}/keys/foo/encrypt`, { requestMetadata: meta, encryptionAlgorithm: 'AES_GCM', plaintext: b64('x') });

    it('lets the key account\'s root through (today\'s authorize(): the default key policy)', async () => {
      for (const op of ['Encrypt', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'ReEncrypt']) {
        expect((await enc(keyMeta(op, { awsPrincipalArn: root }))).status).toBe(200);
      }
      expect((await xksCall(t, `${A}/keys/foo/metadata`, { requestMetadata: keyMeta('CreateKey', { awsPrincipalArn: root }) })).status).toBe(200);
    });

    it('AccessDeniedException for other principals, service principals, and unexpected kmsOperations', async () => {
      expectError(await enc(keyMeta('Encrypt')), 403, 'AccessDeniedException'); // arn:aws:iam::123456789012:user/Alice
      expectError(await enc(keyMeta('Encrypt', { awsPrincipalArn: `arn:aws:iam::${ACCOUNT}:user/Bob` })), 403, 'AccessDeniedException');
      expectError(await enc(keyMeta('Encrypt', { awsPrincipalArn: 'AWS Internal' })), 403, 'AccessDeniedException');
      expectError(await enc(keyMeta('Decrypt', { awsPrincipalArn: root })), 403, 'AccessDeniedException');
      expectError(await enc(keyMeta('BulkEncrypt', { awsPrincipalArn: root })), 403, 'AccessDeniedException');
    });

    it('evaluates the daemon key\'s key policy for the awsPrincipalArn and the kmsOperation\'s action', async () => {
      const alice = `arn:aws:iam::${ACCOUNT}:user/Alice`;
      await h.kms.send(new PutKeyPolicyCommand({
        KeyId: keys.foo,
        Policy: JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            { Sid: 'root', Effect: 'Allow', Principal: { AWS: root }, Action: 'kms:*', Resource: '*' },
            { Sid: 'xks', Effect: 'Allow', Principal: { AWS: alice }, Action: ['kms:GenerateDataKey', 'kms:DescribeKey'], Resource: '*' },
          ],
        }),
      }));
      expect((await enc(keyMeta('GenerateDataKey', { awsPrincipalArn: alice }))).status).toBe(200);
      expectError(await enc(keyMeta('Encrypt', { awsPrincipalArn: alice })), 403, 'AccessDeniedException');
      expect((await xksCall(t, `${A}/keys/foo/metadata`, { requestMetadata: keyMeta('DescribeKey', { awsPrincipalArn: alice }) })).status).toBe(200);
      const sealed = (await enc(keyMeta('GenerateDataKey', { awsPrincipalArn: alice }))).json;
      const dec = await xksCall(t, `${A}/keys/foo/decrypt`, {
        requestMetadata: keyMeta('Decrypt', { awsPrincipalArn: alice }), encryptionAlgorithm: 'AES_GCM', ...sealedOf(sealed),
      });
      expectError(dec, 403, 'AccessDeniedException');
    });

    it('exempts GetHealthStatus', async () => {
      expect((await xksCall(t, `${A}/health`, { requestMetadata: { kmsRequestId: 's-1', kmsOperation: 'KmsHealthCheck' } })).status).toBe(200);
    });
  });
});

describe('daemon wiring: config file + environment, development mode (HTTP on loopback)', () => {
  let d: Harness;
  let dev: XksTarget;
  let healthKeyId: string;
  const DEV = '/dev/kms/xks/v1';
  beforeAll(async () => {
    const configPath = join(tls.dir, 'p11kms.json');
    // maxWaiters 0 with one session: a second concurrent request is throttled at once.
    writeFileSync(configPath, JSON.stringify({
      hsm: { maxSessions: 1, maxWaiters: 0 },
      xks: { insecureHttp: true, healthCacheSeconds: 0, uriPrefixes: [] },
    }));
    d = await startHarness({
      env: {
        P11KMS_CONFIG: configPath,
        P11KMS_XKS_PORT: '0',
        P11KMS_XKS_URI_PREFIX: 'dev',
        P11KMS_XKS_ACCESS_KEY_ID: CRED_A1.accessKeyId,
        P11KMS_XKS_SECRET_ACCESS_KEY: CRED_A1.secretAccessKey,
        P11KMS_XKS_ACCESS_KEY_ID_2: CRED_A2.accessKeyId,
        P11KMS_XKS_SECRET_ACCESS_KEY_2: CRED_A2.secretAccessKey,
        P11KMS_XKS_KEYS: 'foo=alias/xks-foo',
        P11KMS_XKS_HEALTH_KEY: 'alias/xks-health',
      },
    });
    for (const alias of ['alias/xks-foo', 'alias/xks-health']) {
      const id = (await d.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      await d.kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: id }));
      healthKeyId = id;
    }
    expect(d.daemon.xks?.scheme).toBe('http');
    dev = { scheme: 'http', port: d.daemon.xks!.port };
  });
  afterAll(() => d?.stop());
  const health = { requestMetadata: { kmsRequestId: 'd-1', kmsOperation: 'KmsHealthCheck' } };

  it('serves every operation from configuration', async () => {
    expect((await xksCall(dev, `${DEV}/health`, health)).json.ekmFleetDetails[0].healthStatus).toBe('ACTIVE');
    expect((await xksCall(dev, `${DEV}/keys/foo/metadata`, { requestMetadata: keyMeta('DescribeKey') }, { creds: CRED_A2 })).json.keyStatus).toBe('ENABLED');
    const e = await xksCall(dev, `${DEV}/keys/foo/encrypt`, { requestMetadata: keyMeta('Encrypt'), encryptionAlgorithm: 'AES_GCM', plaintext: b64('dev') });
    const r = await xksCall(dev, `${DEV}/keys/foo/decrypt`, { requestMetadata: keyMeta('Decrypt'), encryptionAlgorithm: 'AES_GCM', ...sealedOf(e.json) });
    expect(r.json.plaintext).toBe(b64('dev'));
  });

  it('works with curl --aws-sigv4, as AWS\'s XKS test client sends requests', async (ctx) => {
    let version = '';
    try {
      version = execFileSync('curl', ['--version'], { encoding: 'utf8' });
    } catch {
      /* no curl */
    }
    const m = /^curl (\d+)\.(\d+)/.exec(version);
    if (!m || Number(m[1]) * 100 + Number(m[2]) < 775) return ctx.skip();
    // Asynchronously: the listener runs in this process.
    const { stdout: out } = await promisify(execFile)('curl', [
      '--silent', `http://localhost:${dev.port}${DEV}/keys/foo/encrypt`,
      '-H', 'Content-Type:application/json',
      '--aws-sigv4', 'aws:amz:us-east-1:kms-xks-proxy',
      '--user', `${CRED_A1.accessKeyId}:${CRED_A1.secretAccessKey}`,
      '--data-binary', JSON.stringify({ requestMetadata: keyMeta('Encrypt'), plaintext: b64('curl'), encryptionAlgorithm: 'AES_GCM', ciphertextDataIntegrityValueAlgorithm: 'SHA_256' }),
    ], { encoding: 'utf8', timeout: 10_000 });
    expect(JSON.parse(out)).toHaveProperty('ciphertextDataIntegrityValue');
  });

  it('GetHealthStatus answers InvalidStateException while the health key is disabled (results are not cached here)', async () => {
    await d.kms.send(new DisableKeyCommand({ KeyId: healthKeyId }));
    try {
      expectError(await xksCall(dev, `${DEV}/health`, health), 400, 'InvalidStateException');
    } finally {
      await d.kms.send(new EnableKeyCommand({ KeyId: healthKeyId }));
    }
    expect((await xksCall(dev, `${DEV}/health`, health)).status).toBe(200);
  });

  it('ThrottlingException when every token session is busy and no queueing is allowed', async () => {
    const body = { requestMetadata: keyMeta('Encrypt'), encryptionAlgorithm: 'AES_GCM', plaintext: b64('x') };
    const results = await Promise.all(Array.from({ length: 24 }, () => xksCall(dev, `${DEV}/keys/foo/encrypt`, body)));
    const statuses = new Set(results.map((r) => r.status));
    expect(statuses.has(200)).toBe(true);
    const throttled = results.find((r) => r.status === 429);
    expect(throttled).toBeDefined();
    expectError(throttled!, 429, 'ThrottlingException');
  });

  it('DependencyTimeoutException when the token is gone (health included)', async () => {
    d.daemon.token.close();
    const body = { requestMetadata: keyMeta('Encrypt'), encryptionAlgorithm: 'AES_GCM', plaintext: b64('x') };
    expectError(await xksCall(dev, `${DEV}/keys/foo/encrypt`, body), 503, 'DependencyTimeoutException');
    expectError(await xksCall(dev, `${DEV}/health`, health), 503, 'DependencyTimeoutException');
  });
});
