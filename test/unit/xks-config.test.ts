import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'p11kms-xks-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'cert.pem'), 'CERT');
writeFileSync(join(dir, 'key.pem'), 'KEY');
writeFileSync(join(dir, 'ca.pem'), 'CA');
writeFileSync(join(dir, 'secret-1'), 'FYtE5EFA5FT0mCc3DrGUe2sti527BitkQ0Zr9MO9fvE\n');

const KEY_ID = '1234abcd-12ab-34cd-56ef-1234567890ab';
const ID_1 = 'AKIAI2SFODNN7EXAMPLE';
const ID_2 = 'AKIAI2SFODNN7EXAMPLF';
const SECRET_2 = 'VU6W2byoiBrhDqNGbx703oL0syCAmhlQgwNUT123456=';

let n = 0;
function load(xks: unknown, env: Record<string, string> = {}) {
  const path = join(dir, `config-${n++}.json`);
  writeFileSync(path, JSON.stringify(xks === undefined ? {} : { xks }));
  return loadConfig({ P11KMS_CONFIG: path, P11KMS_PIN: '1234', P11KMS_DATA_DIR: dir, XKS_SECRET_2: SECRET_2, ...env }, dir);
}
function error(xks: unknown, env: Record<string, string> = {}): string {
  try {
    load(xks, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a configuration error');
}

const prefix = (over: Record<string, unknown> = {}) => ({
  prefix: 'keystores/a/',
  credentials: [
    { accessKeyId: ID_1, secretAccessKey: { file: join(dir, 'secret-1') } },
    { accessKeyId: ID_2, secretAccessKey: { env: 'XKS_SECRET_2' } },
  ],
  keys: [{ keyId: KEY_ID }, { keyId: 'alias/payments' }, { keyId: KEY_ID, externalKeyId: 'enc-only', usage: ['ENCRYPT'] }],
  ...over,
});
const tls = { certFile: 'cert.pem', keyFile: 'key.pem' };

describe('xks configuration', () => {
  it('is off without an xks section', () => {
    expect(load(undefined).xks).toBeUndefined();
    expect(load({ enabled: false, uriPrefixes: [prefix()] }).xks).toBeUndefined();
  });

  it('resolves prefixes, two credentials each, key bindings and TLS files', () => {
    const x = load({ tls: { ...tls, clientCaFile: 'ca.pem', clientSubjectNames: ['cks.kms.eu-west-1.amazonaws.com'] }, uriPrefixes: [prefix()], healthKey: 'alias/health' }).xks!;
    expect(x).toMatchObject({ host: '127.0.0.1', port: 8443, insecureHttp: false, healthKey: 'alias/health', healthCacheMs: 30_000, secondaryAuthorization: false });
    expect(x.tls).toMatchObject({ cert: 'CERT', clientCa: 'CA', clientSubjectNames: ['cks.kms.eu-west-1.amazonaws.com'] });
    expect(x.tls!.key.reveal()).toBe('KEY');
    expect(String(x.tls!.key)).toBe('[redacted]');
    const p = x.uriPrefixes[0]!;
    expect(p.prefix).toBe('/keystores/a');
    expect(p.credentials.map((c) => [c.accessKeyId, c.secretAccessKey.reveal()])).toEqual([
      [ID_1, 'FYtE5EFA5FT0mCc3DrGUe2sti527BitkQ0Zr9MO9fvE'],
      [ID_2, SECRET_2],
    ]);
    expect(p.keys).toEqual([
      { externalKeyId: KEY_ID, keyRef: KEY_ID, allowEncrypt: true, allowDecrypt: true },
      { externalKeyId: 'payments', keyRef: 'alias/payments', allowEncrypt: true, allowDecrypt: true },
      { externalKeyId: 'enc-only', keyRef: KEY_ID, allowEncrypt: true, allowDecrypt: false },
    ]);
    expect(JSON.stringify(x)).not.toContain(SECRET_2);
  });

  it('accepts an empty prefix (XksProxyUriPath /kms/xks/v1)', () => {
    expect(load({ tls, uriPrefixes: [prefix({ prefix: '' })] }).xks!.uriPrefixes[0]!.prefix).toBe('');
  });

  it('validates credentials in the spec formats', () => {
    expect(error({ tls, uriPrefixes: [prefix({ credentials: [{ accessKeyId: 'AKIAI2SFODNN7EXAMPL1', secretAccessKey: { env: 'XKS_SECRET_2' } }] })] }))
      .toMatch(/accessKeyId/);
    expect(error({ tls, uriPrefixes: [prefix({ credentials: [{ accessKeyId: 'SHORT2345', secretAccessKey: { env: 'XKS_SECRET_2' } }] })] }))
      .toMatch(/accessKeyId/);
    expect(error({ tls, uriPrefixes: [prefix({ credentials: [{ accessKeyId: ID_1, secretAccessKey: { env: 'SHORT' } }] })] }, { SHORT: 'abc' }))
      .toMatch(/secret of AKIAI2SFODNN7EXAMPLE must be 43 to 64/);
    expect(error({ tls, uriPrefixes: [prefix({ credentials: [] })] })).toMatch(/credentials/);
    const three = prefix().credentials.concat({ accessKeyId: 'AKIAI2SFODNN7EXAMPLG', secretAccessKey: { env: 'XKS_SECRET_2' } });
    expect(error({ tls, uriPrefixes: [prefix({ credentials: three })] })).toMatch(/credentials/);
    const twice = [prefix().credentials[1], prefix().credentials[1]];
    expect(error({ tls, uriPrefixes: [prefix({ credentials: twice })] })).toMatch(/listed twice/);
  });

  it('refuses bad prefixes, duplicate prefixes and duplicate external key ids', () => {
    expect(error({ tls, uriPrefixes: [prefix({ prefix: '/a b' })] })).toMatch(/uri prefix/);
    expect(error({ tls, uriPrefixes: [prefix({ prefix: '/a//b' })] })).toMatch(/uri prefix/);
    expect(error({ tls, uriPrefixes: [prefix(), prefix({ prefix: '/keystores/a' })] })).toMatch(/configured twice/);
    expect(error({ tls, uriPrefixes: [prefix({ keys: [{ keyId: KEY_ID }, { keyId: 'alias/x', externalKeyId: KEY_ID }] })] })).toMatch(/listed twice/);
    expect(error({ tls, uriPrefixes: [prefix({ keys: [{ keyId: 'alias/a/b' }] })] })).toMatch(/externalKeyId/);
    expect(error({ tls, uriPrefixes: [prefix({ keys: [{ keyId: 'not-a-key' }] })] })).toMatch(/keyId/);
    expect(error({ tls, uriPrefixes: [] })).toMatch(/at least one/);
  });

  it('requires TLS, or development mode on loopback only', () => {
    expect(error({ uriPrefixes: [prefix()] })).toMatch(/certFile/);
    expect(error({ tls: { certFile: 'missing.pem', keyFile: 'key.pem' }, uriPrefixes: [prefix()] })).toMatch(/cannot read the certificate/);
    expect(load({ insecureHttp: true, uriPrefixes: [prefix()] }).xks).toMatchObject({ insecureHttp: true, tls: undefined });
    expect(error({ insecureHttp: true, host: '0.0.0.0', uriPrefixes: [prefix()] })).toMatch(/loopback/);
    expect(error({ insecureHttp: true, tls, uriPrefixes: [prefix()] })).toMatch(/either tls or insecureHttp/);
    expect(error({ tls: { ...tls, clientSubjectNames: ['x'] }, uriPrefixes: [prefix()] })).toMatch(/clientCaFile/);
    expect(error({ tls, healthCacheSeconds: 61, uriPrefixes: [prefix()] })).toMatch(/healthCacheSeconds/);
    expect(error({ tls, unknown: 1, uriPrefixes: [prefix()] })).toMatch(/unknown|Unrecognized/i);
  });

  it('builds a development set-up from the environment alone', () => {
    const x = loadConfig({
      P11KMS_PIN: '1234',
      P11KMS_DATA_DIR: dir,
      P11KMS_XKS_ENABLED: 'true',
      P11KMS_XKS_INSECURE_HTTP: '1',
      P11KMS_XKS_PORT: '9443',
      P11KMS_XKS_URI_PREFIX: 'dev',
      P11KMS_XKS_ACCESS_KEY_ID: ID_1,
      P11KMS_XKS_SECRET_ACCESS_KEY: SECRET_2,
      P11KMS_XKS_KEYS: `foo=alias/xks-foo, ${KEY_ID}`,
      P11KMS_XKS_HEALTH_KEY: KEY_ID,
      P11KMS_XKS_SECONDARY_AUTHORIZATION: 'true',
    }, dir).xks!;
    expect(x).toMatchObject({ port: 9443, insecureHttp: true, healthKey: KEY_ID, secondaryAuthorization: true });
    expect(x.uriPrefixes).toHaveLength(1);
    expect(x.uriPrefixes[0]).toMatchObject({
      prefix: '/dev',
      keys: [
        { externalKeyId: 'foo', keyRef: 'alias/xks-foo' },
        { externalKeyId: KEY_ID, keyRef: KEY_ID },
      ],
    });
    expect(() => loadConfig({ P11KMS_PIN: '1', P11KMS_XKS_ENABLED: 'maybe' }, dir)).toThrow(/true or false/);
    expect(() => loadConfig({ P11KMS_PIN: '1', P11KMS_XKS_ENABLED: '1', P11KMS_XKS_INSECURE_HTTP: '1', P11KMS_XKS_ACCESS_KEY_ID: ID_1 }, dir))
      .toThrow(/P11KMS_XKS_SECRET_ACCESS_KEY/);
  });
});
