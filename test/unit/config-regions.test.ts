import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

/** Regions and peers (issue 13): names, own tokens and peer settings are checked at start-up. */
const base = { P11KMS_PIN: 'dev-pin', P11KMS_DATA_DIR: '/tmp/p11kms-config-test' };
const file = (json: unknown) => {
  const path = join(mkdtempSync(join(tmpdir(), 'p11kms-cfg-')), 'config.json');
  writeFileSync(path, JSON.stringify(json));
  return path;
};

describe('regions and peers configuration', () => {
  it('serves the default region first, then P11KMS_REGIONS and the file; regions without hsm share the main token', () => {
    const c = loadConfig({
      ...base, P11KMS_REGION: 'eu-west-1', P11KMS_REGIONS: 'ap-south-1, eu-west-1', WEST_PIN: 'w',
      P11KMS_CONFIG: file({ regions: { 'us-west-2': { hsm: { tokenLabel: 'hsm-west', pin: { env: 'WEST_PIN' } } } } }),
    });
    expect(c.regions.map((r) => [r.name, r.mainToken, r.hsm.tokenLabel])).toEqual([
      ['eu-west-1', true, 'p11kms-dev'], ['ap-south-1', true, 'p11kms-dev'], ['us-west-2', false, 'hsm-west'],
    ]);
    expect(c.regions[2]!.hsm.pin.reveal()).toBe('w');
    expect(loadConfig(base).regions.map((r) => r.name)).toEqual(['us-east-1']);
  });

  it('refuses a malformed region, a region naming another region\'s token, and bad peers', () => {
    expect(() => loadConfig({ ...base, P11KMS_REGIONS: 'mars' })).toThrow(/not a region name/);
    const sameToken = file({ regions: { 'eu-west-1': { hsm: { tokenLabel: 't', pin: { env: 'P' } } }, 'eu-west-2': { hsm: { tokenLabel: 't', pin: { env: 'P' } } } } });
    expect(() => loadConfig({ ...base, P: 'x', P11KMS_CONFIG: sameToken })).toThrow(/names the token of region eu-west-1/);
    expect(() => loadConfig({ ...base, P11KMS_PEERS: '{' })).toThrow(/P11KMS_PEERS is not valid JSON/);
    expect(() => loadConfig({ ...base, P11KMS_PEERS: JSON.stringify({ 'eu-west-1': { endpoint: 'nope' } }) })).toThrow(ConfigError);
    const peers = loadConfig({
      ...base, S: 'secret', P11KMS_PEER_PRINCIPALS: 'arn:aws:iam::111122223333:user/peer',
      P11KMS_PEERS: JSON.stringify({ 'eu-west-1': { endpoint: 'http://127.0.0.1:1', accessKeyId: 'AKIAPEERPEERPEER0001', secretAccessKey: { env: 'S' } } }),
    });
    expect(peers.peers['eu-west-1']).toMatchObject({ endpoint: 'http://127.0.0.1:1', accessKeyId: 'AKIAPEERPEERPEER0001' });
    expect(peers.peerPrincipals).toEqual(['arn:aws:iam::111122223333:user/peer']);
  });
});
