import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

/** The AWS API listener's TLS settings and the loopback rule (src/net/api-tls-config.ts). */
const dir = mkdtempSync(join(tmpdir(), 'p11kms-tls-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'cert.pem'), 'CERT');
writeFileSync(join(dir, 'key.pem'), 'KEY');
writeFileSync(join(dir, 'ca.pem'), 'CA');

let n = 0;
function load(file: object, env: Record<string, string> = {}) {
  const path = join(dir, `config-${n++}.json`);
  writeFileSync(path, JSON.stringify(file));
  return loadConfig({ P11KMS_CONFIG: path, P11KMS_PIN: '1234', P11KMS_DATA_DIR: dir, ...env }, dir);
}
function error(file: object, env: Record<string, string> = {}): string {
  try {
    load(file, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a configuration error');
}
const tls = { certFile: 'cert.pem', keyFile: 'key.pem' };
const ROOT = 'arn:aws:iam::111122223333:root';

describe('AWS API listener security', () => {
  it('serves plain HTTP on loopback by default, and HTTPS when certFile and keyFile are set', () => {
    expect(load({}).listener).toEqual({ plainHttpBehindTlsProxy: false });
    expect(load({ host: '::1' }).listener.tls).toBeUndefined();
    const t = load({ tls }).listener.tls!;
    expect(t).toMatchObject({ cert: 'CERT', files: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') }, watchIntervalMs: 10_000 });
    expect(t.key.reveal()).toBe('KEY');
    expect(String(t.key)).toBe('[redacted]');
    const fromEnv = load({}, { P11KMS_TLS_CERT: 'cert.pem', P11KMS_TLS_KEY: 'key.pem', P11KMS_TLS_CLIENT_CA: 'ca.pem', P11KMS_TLS_CLIENT_SUBJECT: 'a, b', P11KMS_TLS_WATCH_INTERVAL_MS: '0' });
    expect(fromEnv.listener.tls).toMatchObject({ clientCa: 'CA', clientSubjectNames: ['a', 'b'], watchIntervalMs: 0 });
  });

  it('refuses a non-loopback address without TLS unless plainHttpBehindTlsProxy is set', () => {
    expect(error({ host: '0.0.0.0' })).toMatch(/host '0\.0\.0\.0' is not a loopback address.*P11KMS_TLS_CERT.*plainHttpBehindTlsProxy/);
    expect(error({}, { P11KMS_HOST: '192.0.2.10' })).toMatch(/not a loopback address/);
    expect(load({ host: '0.0.0.0', plainHttpBehindTlsProxy: true }).listener).toEqual({ plainHttpBehindTlsProxy: true });
    expect(load({}, { P11KMS_HOST: '0.0.0.0', P11KMS_PLAIN_HTTP_BEHIND_TLS_PROXY: 'true' }).listener.plainHttpBehindTlsProxy).toBe(true);
    expect(load({ host: '0.0.0.0', tls }).listener.tls).toBeDefined();
  });

  it('maps client certificate CNs to principals, and accepts only those CNs at the handshake', () => {
    const t = load({ tls: { ...tls, clientCaFile: 'ca.pem', clientPrincipals: { app1: ['arn:aws:iam::111122223333:user/app1'], ops: [ROOT] } } }).listener.tls!;
    expect(t.clientSubjectNames).toEqual(['app1', 'ops']);
    expect(t.clientPrincipals).toEqual({ app1: ['arn:aws:iam::111122223333:user/app1'], ops: [ROOT] });
    const env = load({ tls: { ...tls, clientCaFile: 'ca.pem' } }, { P11KMS_TLS_CLIENT_PRINCIPALS: JSON.stringify({ x: [ROOT] }) }).listener.tls!;
    expect(env.clientPrincipals).toEqual({ x: [ROOT] });
  });

  it('names the setting at fault', () => {
    expect(error({ tls: { certFile: 'cert.pem' } })).toMatch(/keyFile/);
    expect(error({}, { P11KMS_TLS_KEY: 'key.pem' })).toMatch(/certFile and tls.keyFile are both required/);
    expect(error({ tls: { ...tls, keyFile: 'missing.pem' } })).toMatch(/cannot read the private key file .*missing\.pem/);
    expect(error({ tls: { ...tls, clientSubjectNames: ['a'] } })).toMatch(/clientSubjectNames needs tls.clientCaFile/);
    expect(error({ tls: { ...tls, clientPrincipals: { a: [ROOT] } } })).toMatch(/clientPrincipals needs tls.clientCaFile/);
    expect(error({ tls: { ...tls, clientCaFile: 'ca.pem', clientPrincipals: { a: ['alice'] } } })).toMatch(/IAM principal ARN/);
    expect(error({}, { P11KMS_TLS_CLIENT_PRINCIPALS: '{' })).toMatch(/P11KMS_TLS_CLIENT_PRINCIPALS must be a JSON object/);
    expect(error({}, { P11KMS_TLS_CLIENT_CA: 'ca.pem' })).toMatch(/need tls.certFile/);
    expect(error({ tls: { ...tls, watchIntervalMs: -1 } })).toMatch(/watchIntervalMs/);
    expect(error({}, { P11KMS_PLAIN_HTTP_BEHIND_TLS_PROXY: 'maybe' })).toMatch(/true or false/);
  });
});
