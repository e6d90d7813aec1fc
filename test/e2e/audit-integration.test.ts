/**
 * The audit trail and metrics reached from every front door and background job, not only the
 * AWS API: XKS proxy calls, lifecycle scheduler actions, the admin API on the Unix socket, and
 * custom key store connection changes. One daemon (one SoftHSM2 module per process) with the
 * XKS proxy in development mode, a second token for a custom key store, and a ManualClock.
 */
import {
  ConnectCustomKeyStoreCommand, CreateAliasCommand, CreateCustomKeyStoreCommand, CreateKeyCommand, DescribeCustomKeyStoresCommand,
  DescribeKeyCommand, EnableKeyRotationCommand,
} from '@aws-sdk/client-kms';
import { readdirSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall } from '../../src/cli/credentials.js';
import { ManualClock, startHarness, type Harness } from '../helpers/daemon.js';
import { advance, DAY, syncClock } from '../helpers/lifecycle.js';
import { addToken, SOFTHSM_MODULE, type ExtraToken, type TempToken } from '../helpers/softhsm.js';
import { b64, closeAgents, CRED_A1, keyMeta, xksCall, type XksCallOptions, type XksTarget } from '../helpers/xks.js';

const STORE_HSM = 'cluster-auditstoreone';
const MISSING_HSM = 'cluster-auditmissingt';
const clock = new ManualClock(Date.now());
let h: Harness;
let store: ExtraToken;
let xks: XksTarget;

beforeAll(async () => {
  h = await startHarness({
    clock,
    env: {
      P11KMS_XKS_ENABLED: '1',
      P11KMS_XKS_INSECURE_HTTP: '1',
      P11KMS_XKS_PORT: '0',
      P11KMS_XKS_URI_PREFIX: '/audit',
      P11KMS_XKS_ACCESS_KEY_ID: CRED_A1.accessKeyId,
      P11KMS_XKS_SECRET_ACCESS_KEY: CRED_A1.secretAccessKey,
      P11KMS_XKS_KEYS: 'ext-1=alias/xks-audit',
    },
    prepare: (t: TempToken) => {
      store = addToken(t, 'p11kms-audit-store');
      return {
        P11KMS_HSMS: JSON.stringify({
          [STORE_HSM]: { module: SOFTHSM_MODULE, tokenLabel: store.label, maxSessions: 2 },
          [MISSING_HSM]: { module: SOFTHSM_MODULE, tokenLabel: 'p11kms-not-there' },
        }),
      };
    },
  });
  syncClock(h, clock);
  xks = { scheme: 'http', port: h.daemon.xks!.port };
});
afterAll(async () => {
  closeAgents();
  await h?.stop();
});

const trailText = () => {
  const dir = h.config.audit.dir;
  return readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort().map((f) => readFileSync(join(dir, f), 'utf8')).join('');
};
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const records = (): any[] => trailText().split('\n').filter(Boolean).map((l) => JSON.parse(l));

async function eventually<T>(find: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error('not found in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function scrape(): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`${h.endpoint}/metrics`, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
}
/** The value of one series in a scrape (0 when absent). */
const metric = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
};

describe('XKS proxy calls', () => {
  it('each produces one CloudTrail-shaped event with the requestMetadata, never plaintext, ciphertext or AAD; and request metrics', async () => {
    const keyId = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    await h.kms.send(new CreateAliasCommand({ AliasName: 'alias/xks-audit', TargetKeyId: keyId }));
    const arn = (await h.kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.Arn!;
    const signed: XksCallOptions = { signingDate: clock.now() };
    const path = '/audit/kms/xks/v1/keys/ext-1';
    const secret = 'xks plaintext that must never be audited';
    const aad = 'xks aad that must never be audited';
    const encMeta = keyMeta('Encrypt', { kmsRequestId: 'xks-audit-enc' });
    const enc = await xksCall(xks, `${path}/encrypt`, {
      requestMetadata: encMeta, encryptionAlgorithm: 'AES_GCM', plaintext: b64(secret), additionalAuthenticatedData: b64(aad),
    }, signed);
    expect(enc.status).toBe(200);
    const dec = await xksCall(xks, `${path}/decrypt`, {
      requestMetadata: keyMeta('Decrypt', { kmsRequestId: 'xks-audit-dec' }), encryptionAlgorithm: 'AES_GCM',
      additionalAuthenticatedData: b64(aad), ciphertext: enc.json.ciphertext, initializationVector: enc.json.initializationVector,
      authenticationTag: enc.json.authenticationTag, ciphertextMetadata: enc.json.ciphertextMetadata,
    }, signed);
    expect(dec.json.plaintext).toBe(b64(secret));
    const bad = await xksCall(xks, `${path}/encrypt`, { requestMetadata: keyMeta('Encrypt'), encryptionAlgorithm: 'AES_GCM', plaintext: b64('x') },
      { ...signed, creds: { ...CRED_A1, secretAccessKey: `x${CRED_A1.secretAccessKey}` } });
    expect(bad.status).toBe(401);

    const events = records().filter((r) => r.eventSource === 'kms-xks-proxy');
    expect(events).toHaveLength(3);
    expect(events[0]).toMatchObject({
      eventName: 'Encrypt', eventType: 'AwsApiCall', readOnly: true, requestID: enc.headers['x-amzn-requestid'],
      userIdentity: { type: 'AWSService', invokedBy: 'kms.amazonaws.com', accessKeyId: CRED_A1.accessKeyId },
      requestParameters: { externalKeyId: 'ext-1', requestMetadata: encMeta },
      resources: [{ ARN: arn, type: 'AWS::KMS::Key' }],
      additionalEventData: { uriPrefix: '/audit', httpStatus: 200 },
    });
    expect(events[0].errorCode).toBeUndefined();
    expect(events[1]).toMatchObject({ eventName: 'Decrypt', requestParameters: { requestMetadata: { kmsRequestId: 'xks-audit-dec' } } });
    expect(events[2]).toMatchObject({ eventName: 'Encrypt', errorCode: 'AuthenticationFailedException', userIdentity: { type: 'Unknown' } });

    const text = trailText();
    for (const s of [secret, b64(secret), aad, b64(aad), enc.json.ciphertext, enc.json.authenticationTag, enc.json.initializationVector,
      CRED_A1.secretAccessKey]) {
      expect(text).not.toContain(s);
    }
    const m = await scrape();
    expect(metric(m, 'p11kms_requests_total{front_door="xks",operation="Encrypt",outcome="success"}')).toBe(1);
    expect(metric(m, 'p11kms_requests_total{front_door="xks",operation="Decrypt",outcome="success"}')).toBe(1);
    expect(metric(m, 'p11kms_requests_total{front_door="xks",operation="Encrypt",outcome="client_error"}')).toBe(1);
    expect(metric(m, 'p11kms_request_errors_total{front_door="xks",operation="Encrypt",code="AuthenticationFailedException"}')).toBe(1);
  });
});

describe('admin API', () => {
  it('records credential and identity-policy changes without the secret', async () => {
    const created = await adminCall(h.daemon.socketPath, 'CreateCredential', { Type: 'user', Name: 'audited-alice' });
    const secret = created.SecretAccessKey as string;
    expect(secret).toMatch(/^[A-Za-z0-9+/]{40}$/);
    const policy = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:ListKeys', Resource: '*' }] };
    await adminCall(h.daemon.socketPath, 'PutPrincipalPolicy', { PrincipalArn: created.PrincipalArn, PolicyName: 'p1', PolicyDocument: policy });
    await adminCall(h.daemon.socketPath, 'DisableCredential', { AccessKeyId: created.AccessKeyId });
    await adminCall(h.daemon.socketPath, 'DeleteCredential', { AccessKeyId: 'AKIANOSUCHKEY2345678' }).catch(() => undefined);

    const events = records().filter((r) => r.eventSource === 'p11kms-admin');
    expect(events.map((e) => e.eventName)).toEqual(['CreateCredential', 'PutPrincipalPolicy', 'DisableCredential', 'DeleteCredential']);
    expect(events[0]).toMatchObject({
      eventType: 'AwsApiCall', readOnly: false, userIdentity: { type: 'AWSService', invokedBy: 'p11kms-admin' },
      requestParameters: { type: 'user', name: 'audited-alice' },
      responseElements: { accessKeyId: created.AccessKeyId, principalArn: created.PrincipalArn },
    });
    expect(events[1].requestParameters).toMatchObject({ principalArn: created.PrincipalArn, policyName: 'p1' });
    expect(events[2].requestParameters).toEqual({ accessKeyId: created.AccessKeyId });
    expect(events[3]).toMatchObject({ errorCode: 'NotFoundException' });
    expect(trailText()).not.toContain(secret);
  });
});

describe('custom key store connections', () => {
  const describeStore = async (id: string) =>
    (await h.kms.send(new DescribeCustomKeyStoresCommand({ CustomKeyStoreId: id }))).CustomKeyStores![0]!;

  it('records the background outcome of ConnectCustomKeyStore and exposes each store\'s state as a gauge', async () => {
    const ok = (await h.kms.send(new CreateCustomKeyStoreCommand({
      CustomKeyStoreName: 'audited', CloudHsmClusterId: STORE_HSM, KeyStorePassword: store.userPin,
    }))).CustomKeyStoreId!;
    const missing = (await h.kms.send(new CreateCustomKeyStoreCommand({
      CustomKeyStoreName: 'audited-missing', CloudHsmClusterId: MISSING_HSM, KeyStorePassword: 'password1',
    }))).CustomKeyStoreId!;
    await h.kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: ok }));
    await h.kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: missing }));

    const connected = await eventually(() => records().find((r) => r.eventName === 'CustomKeyStoreConnected'));
    expect(connected).toMatchObject({
      eventType: 'AwsServiceEvent', userIdentity: { type: 'AWSService', invokedBy: 'p11kms' },
      requestParameters: { customKeyStoreId: ok },
      additionalEventData: { customKeyStoreId: ok, cloudHsmClusterId: STORE_HSM, connectionState: 'CONNECTED', trigger: 'connect' },
    });
    const failed = await eventually(() => records().find((r) => r.eventName === 'CustomKeyStoreConnectionFailed'));
    expect(failed).toMatchObject({
      errorCode: 'CLUSTER_NOT_FOUND', requestParameters: { customKeyStoreId: missing },
      additionalEventData: { connectionState: 'FAILED', connectionErrorCode: 'CLUSTER_NOT_FOUND' },
    });
    expect(trailText()).not.toContain(store.userPin);
    expect((await describeStore(ok)).ConnectionState).toBe('CONNECTED');

    const m = await scrape();
    expect(metric(m, `p11kms_custom_key_store_connection_state{custom_key_store_id="${ok}",state="CONNECTED"}`)).toBe(1);
    expect(metric(m, `p11kms_custom_key_store_connection_state{custom_key_store_id="${ok}",state="DISCONNECTED"}`)).toBe(0);
    expect(metric(m, `p11kms_custom_key_store_connection_state{custom_key_store_id="${missing}",state="FAILED"}`)).toBe(1);
  });
});

describe('lifecycle scheduler', () => {
  it('records an automatic rotation as a RotateKey service event and counts the job run', async () => {
    const key = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    await h.kms.send(new EnableKeyRotationCommand({ KeyId: key.KeyId, RotationPeriodInDays: 90 }));
    const before = await scrape();
    advance(h, clock, 91 * DAY);
    const report = await h.daemon.scheduler.runOnce();
    expect(report.keysRotated).toBe(1);
    const material = (await h.kms.send(new DescribeKeyCommand({ KeyId: key.KeyId }))).KeyMetadata!.CurrentKeyMaterialId;
    expect(material).not.toBe(key.CurrentKeyMaterialId);

    const rotations = records().filter((r) => r.eventName === 'RotateKey');
    expect(rotations).toHaveLength(1);
    expect(rotations[0]).toMatchObject({
      eventType: 'AwsServiceEvent', eventSource: 'kms.amazonaws.com', readOnly: false,
      userIdentity: { type: 'AWSService', invokedBy: 'p11kms' },
      resources: [{ ARN: key.Arn, type: 'AWS::KMS::Key', accountId: key.AWSAccountId }],
      additionalEventData: { keyId: key.KeyId, keyMaterialId: material, rotationType: 'AUTOMATIC' },
    });
    expect(Date.parse(rotations[0].eventTime)).toBe(clock.now().getTime());

    const after = await scrape();
    for (const job of ['rotation', 'deletion', 'material-expiry', 'import-token-expiry']) {
      const series = `p11kms_job_runs_total{job="${job}"}`;
      expect(metric(after, series) - metric(before, series)).toBe(1);
    }
    expect(metric(after, 'p11kms_job_failures_total{job="rotation"}')).toBe(0);
  });
});
