import {
  CreateKeyCommand, DecryptCommand, DescribeKeyCommand, EncryptCommand, KMSClient, ReplicateKeyCommand,
  RotateKeyOnDemandCommand, UpdatePrimaryRegionCommand,
} from '@aws-sdk/client-kms';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPeerKeyCli } from '../../src/cli/peer-keys.js';
import { ADMIN, failure, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { addToken, SOFTHSM_MODULE, type ExtraToken } from '../helpers/softhsm.js';

/**
 * A region with its own token (issue 13, part 3): us-east-1 keeps its keys in the main token,
 * eu-west-1 in a second SoftHSM2 token. Multi-Region material moves between them only wrapped,
 * under a peer key the security officer marked CKA_TRUSTED. The set-up east → west is done
 * before the daemon starts; west → east is left out at first, to see a replica that cannot be
 * brought up to date stay consistent and catch up once the SO step is done (in another process,
 * as an operator would, with the built `p11kms peer-key`).
 */
const ROOT = resolve(import.meta.dirname, '../..');
let h: Harness;
let westToken: ExtraToken;
let env: Record<string, string>;
let east: KMSClient;
let west: KMSClient;
const plaintext = Buffer.from('moves only wrapped');
const io = { out: () => undefined, err: (s: string) => process.stderr.write(s) };

beforeAll(async () => {
  h = await startHarness({
    prepare: (t) => {
      westToken = addToken(t, 'p11kms-west');
      const configFile = join(t.dir, 'config.json');
      writeFileSync(configFile, JSON.stringify({ regions: { 'eu-west-1': { hsm: { tokenLabel: westToken.label, pin: { env: 'WEST_PIN' } } } } }));
      env = {
        P11KMS_DATA_DIR: join(t.dir, 'data'), P11KMS_PKCS11_MODULE: SOFTHSM_MODULE, P11KMS_TOKEN_LABEL: t.label,
        P11KMS_PIN: t.userPin, P11KMS_CONFIG: configFile, WEST_PIN: westToken.userPin,
      };
      // East trusts west's receive key (SO of the east token); the daemon is not running yet.
      const westKey = join(t.dir, 'west-receive.pem');
      expect(runPeerKeyCli(['export-receive-key', '--region', 'eu-west-1', '--out', westKey], env, io)).toBe(0);
      expect(runPeerKeyCli(['trust', '--peer-region', 'eu-west-1', '--public-key', westKey], { ...env, P11KMS_SO_PIN: t.soPin }, io)).toBe(0);
      return { P11KMS_CONFIG: configFile, WEST_PIN: westToken.userPin };
    },
  });
  const make = (region: string) => new KMSClient({ endpoint: h.endpoint, region, credentials: ADMIN, maxAttempts: 1 });
  east = make('us-east-1');
  west = make('eu-west-1');
});
afterAll(async () => h?.stop());

const westInspect = () => inspectToken({ ...h.token, label: westToken.label, userPin: westToken.userPin });
const objectsOf = (all: ReturnType<typeof inspectToken>, keyId: string) => all.filter((o) => o.label.startsWith(`p11kms:${keyId}:`));

describe('Multi-Region material between two tokens', () => {
  let keyId: string;
  let v1: Uint8Array;

  it('Multi-Region material is wrappable only by a trusted key; its value stays unreadable; other keys stay non-extractable', async () => {
    keyId = (await east.send(new CreateKeyCommand({ MultiRegion: true }))).KeyMetadata!.KeyId!;
    const single = (await east.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const all = inspectToken(h.token);
    const [mrk] = objectsOf(all, keyId);
    expect(mrk).toMatchObject({ extractable: true, sensitive: true, valueRead: 'CKR_ATTRIBUTE_SENSITIVE', wrapped: 'REFUSED' });
    const [plain] = objectsOf(all, single);
    expect(plain).toMatchObject({ extractable: false, sensitive: true, valueRead: 'CKR_ATTRIBUTE_SENSITIVE' });
    expect(plain?.wrapped).not.toBe('WRAPPED');
    v1 = (await east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
  });

  it('ReplicateKey into the region with its own token moves the material wrapped; either copy decrypts the other\'s ciphertext', async () => {
    const r = await east.send(new ReplicateKeyCommand({ KeyId: keyId, ReplicaRegion: 'eu-west-1' }));
    expect(r.ReplicaKeyMetadata?.KeyState).toBe('Enabled');
    const [copy] = objectsOf(westInspect(), keyId);
    expect(copy).toMatchObject({ extractable: true, sensitive: true, valueRead: 'CKR_ATTRIBUTE_SENSITIVE', wrapped: 'REFUSED' });
    expect(Buffer.from((await west.send(new DecryptCommand({ CiphertextBlob: v1 }))).Plaintext!)).toEqual(plaintext);
    const w = (await west.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: w }))).Plaintext!)).toEqual(plaintext);
  });

  it('rotation of the primary reaches the replica\'s token', async () => {
    await east.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
    const w2 = (await west.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(w2).readUInt32BE(17)).toBe(2);
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: w2 }))).Plaintext!)).toEqual(plaintext);
    expect(objectsOf(westInspect(), keyId)).toHaveLength(2);
  });

  it('an asymmetric Multi-Region key cannot move to another token (it is not created wrappable), and nothing is left behind', async () => {
    const k = (await east.send(new CreateKeyCommand({ MultiRegion: true, KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }))).KeyMetadata!;
    const e = await failure(east.send(new ReplicateKeyCommand({ KeyId: k.KeyId, ReplicaRegion: 'eu-west-1' })));
    expect(e.name).toBe('UnsupportedOperationException');
    expect((await failure(west.send(new DescribeKeyCommand({ KeyId: k.KeyId })))).name).toBe('NotFoundException');
  });

  it('without a trusted key the other way, the new primary rotates and the old one keeps serving; the SO step lets it catch up', async () => {
    await east.send(new UpdatePrimaryRegionCommand({ KeyId: keyId, PrimaryRegion: 'eu-west-1' }));
    await west.send(new RotateKeyOnDemandCommand({ KeyId: keyId }));
    const w3 = (await west.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(w3).readUInt32BE(17)).toBe(3);
    // us-east-1 is now a replica whose token could not receive v3: it still has v1 and v2, whole.
    const e2 = (await east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!;
    expect(Buffer.from(e2).readUInt32BE(17)).toBe(2);
    expect(objectsOf(inspectToken(h.token), keyId)).toHaveLength(2);
    expect((await failure(east.send(new DecryptCommand({ CiphertextBlob: w3 })))).$metadata?.httpStatusCode).toBeGreaterThanOrEqual(400);
    // The operator's set-up for west → east, in other processes, while the daemon runs.
    const eastKey = join(h.token.dir, 'east-receive.pem');
    const cli = (args: string[], extra: Record<string, string> = {}) =>
      execFileSync(process.execPath, [join(ROOT, 'dist/entry.cjs'), 'peer-key', ...args], {
        env: { PATH: process.env.PATH, SOFTHSM2_CONF: h.token.conf, ...env, ...extra },
      }).toString();
    cli(['export-receive-key', '--out', eastKey]);
    expect(cli(['trust', '--region', 'eu-west-1', '--peer-region', 'us-east-1', '--public-key', eastKey], { P11KMS_SO_PIN: westToken.soPin }))
      .toMatch(/now trusts the receive key of us-east-1/);
    for (const s of h.daemon.regionSchedulers) await s.runOnce();
    expect(Buffer.from((await east.send(new DecryptCommand({ CiphertextBlob: w3 }))).Plaintext!)).toEqual(plaintext);
    expect(Buffer.from((await east.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext }))).CiphertextBlob!).readUInt32BE(17)).toBe(3);
  });
});
