import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

/** The `hsms` section (custom key stores, issue #6): names, shape and conflicts are checked at start-up. */
const base = { P11KMS_PIN: 'dev-pin', P11KMS_DATA_DIR: '/tmp/p11kms-config-test' };
const load = (hsms: unknown) => loadConfig({ ...base, P11KMS_HSMS: typeof hsms === 'string' ? hsms : JSON.stringify(hsms) });
const M = '/usr/lib/softhsm/libsofthsm2.so';

describe('hsms configuration', () => {
  it('accepts named HSMs with defaults, from P11KMS_HSMS merged over the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'p11kms-cfg-'));
    const anchor = join(dir, 'ca.pem');
    writeFileSync(anchor, '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n');
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ hsms: { 'cluster-fromthefile': { module: M, tokenLabel: 'a', trustAnchorCertificate: { file: anchor } } } }));
    const c = loadConfig({ ...base, P11KMS_CONFIG: file, P11KMS_HSMS: JSON.stringify({ 'cluster-fromtheenvxy': { tokenLabel: 'b' } }) });
    expect(Object.keys(c.hsms).sort()).toEqual(['cluster-fromtheenvxy', 'cluster-fromthefile']);
    expect(c.hsms['cluster-fromtheenvxy']).toMatchObject({ module: M, tokenLabel: 'b', maxSessions: 8, capabilities: { gcmIv: 'caller' } });
    expect(c.hsms['cluster-fromthefile']!.trustAnchorCertificate).toContain('BEGIN CERTIFICATE');
    expect(loadConfig(base).hsms).toEqual({});
  });

  it('refuses names the AWS CLI could not send, PINs in configuration, missing labels and shared tokens', () => {
    expect(() => load({ 'p11kms-store-1': { tokenLabel: 'a' } })).toThrow(/CloudHsmClusterId pattern/);
    expect(() => load({ 'cluster-short': { tokenLabel: 'a' } })).toThrow(ConfigError);
    expect(() => load({ 'cluster-withadigit1x': { tokenLabel: 'a' } })).toThrow(ConfigError);
    expect(() => load({ 'cluster-teststoreone': { tokenLabel: 'a', pin: { env: 'X' } } })).toThrow(/pin/);
    expect(() => load({ 'cluster-teststoreone': { module: M } })).toThrow(/tokenLabel/);
    expect(() => load({ 'cluster-teststoreone': { tokenLabel: 'p11kms-dev' } })).toThrow(/same token as hsm/);
    expect(() => load({ 'cluster-teststoreone': { tokenLabel: 'a' }, 'cluster-teststoretwo': { tokenLabel: 'a' } })).toThrow(/same token/);
    expect(() => load({ 'cluster-teststoreone': { tokenLabel: 'a', capabilities: { gcmIv: 'token-guessed' } } })).toThrow(/gcmIv/);
    expect(() => load('{not json')).toThrow(/P11KMS_HSMS is not valid JSON/);
  });
});
