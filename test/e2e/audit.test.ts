import {
  CreateKeyCommand, DecryptCommand, EncryptCommand, GenerateDataKeyCommand, GenerateRandomCommand, ListKeysCommand,
  type KeyMetadata,
} from '@aws-sdk/client-kms';
import { execFile } from 'node:child_process';
import fs, { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { withHash } from '../../src/audit/chain.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { ADMIN, client, failure, startHarness, testConfig, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { until } from '../helpers/cluster.js';
import { SOFTHSM_MODULE } from '../helpers/softhsm.js';

const ROOT = resolve(import.meta.dirname, '../..');
let h: Harness;
let configFile: string;
const scratch: string[] = [];

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-audit-cfg-'));
  scratch.push(dir);
  configFile = join(dir, 'config.json');
  // Small files and frequent seals, so a short test rotates and seals several times.
  writeFileSync(configFile, JSON.stringify({ audit: { maxFileBytes: 12_000, sealEveryEvents: 6 } }));
  h = await startHarness({ env: { P11KMS_CONFIG: configFile } });
});
afterAll(async () => {
  await h?.stop();
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

const env = (extra: Record<string, string> = {}) => ({ P11KMS_CONFIG: configFile, ...extra });
const auditDir = () => h.config.audit.dir;
const files = (dir = auditDir()) => readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort().map((f) => join(dir, f));
const records = () => files().flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
const byRequest = (id: string | undefined) => records().filter((r) => r.requestID === id);

async function restart(extra: Record<string, string> = {}): Promise<void> {
  await h.daemon.stop();
  const daemon = await startDaemon(testConfig(h.token, env(extra)), silentLogger);
  h = { ...h, daemon, endpoint: `http://127.0.0.1:${daemon.port}`, kms: client(`http://127.0.0.1:${daemon.port}`) };
}

/** `p11kms audit verify`, the built binary, given the token the way an operator would: PIN file and module env. */
function verifyCli(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolveRun) => {
    execFile(
      process.execPath,
      [join(ROOT, 'dist/entry.cjs'), 'audit', 'verify', ...args],
      {
        env: {
          PATH: process.env.PATH,
          SOFTHSM2_CONF: h.token.conf,
          P11KMS_DATA_DIR: h.config.dataDir,
          P11KMS_PKCS11_MODULE: SOFTHSM_MODULE,
          P11KMS_TOKEN_LABEL: h.token.label,
          P11KMS_PIN_FILE: join(h.token.dir, 'softhsm', 'user.pin'),
        },
      },
      (err, stdout, stderr) => resolveRun({ code: err ? ((err as { code?: number }).code ?? 99) : 0, out: stdout + stderr }),
    );
  });
}

/** A copy of the trail to tamper with; the token's chain head still describes the original. */
function copyTrail(): { dir: string; files: string[]; lines(i: number): string[]; write(i: number, lines: string[]): void } {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-audit-copy-'));
  scratch.push(dir);
  cpSync(auditDir(), dir, { recursive: true });
  const list = files(dir);
  return {
    dir,
    files: list,
    lines: (i) => readFileSync(list[i]!, 'utf8').split('\n').slice(0, -1),
    write: (i, lines) => writeFileSync(list[i]!, lines.map((l) => `${l}\n`).join('')),
  };
}

/** The index (0-based) of the first ordinary event line in a file. */
const firstEvent = (lines: string[]) => lines.findIndex((l) => l.includes('"eventType":"AwsApiCall"'));
const seqOf = (line: string) => JSON.parse(line).seq as number;

describe('audit events', () => {
  let key: KeyMetadata;
  it('records one CloudTrail-shaped event per call, successful or not, without plaintexts, data keys or secrets', async () => {
    key = (await h.kms.send(new CreateKeyCommand({ Description: 'audited' }))).KeyMetadata!;
    const plaintext = 'audit-me-not: the plaintext';
    const enc = await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from(plaintext), EncryptionContext: { app: 'billing' } }));
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { app: 'billing' } }));
    const gdk = await h.kms.send(new GenerateDataKeyCommand({ KeyId: key.Arn, KeySpec: 'AES_256' }));
    const rnd = await h.kms.send(new GenerateRandomCommand({ NumberOfBytes: 32 }));
    const bad = await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { app: 'other' } })));
    const intruder = await failure(
      client(h.endpoint, { accessKeyId: ADMIN.accessKeyId, secretAccessKey: 'not-the-secret-key-at-all-000000000000' }).send(
        new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from(plaintext) }),
      ),
    );

    const [e] = byRequest(enc.$metadata.requestId);
    expect(e).toMatchObject({
      eventVersion: '1.11',
      eventSource: 'kms.amazonaws.com',
      eventName: 'Encrypt',
      eventType: 'AwsApiCall',
      awsRegion: 'us-east-1',
      sourceIPAddress: '127.0.0.1',
      userIdentity: {
        type: 'Root', principalId: '111122223333', arn: 'arn:aws:iam::111122223333:root', accountId: '111122223333',
        accessKeyId: ADMIN.accessKeyId,
      },
      requestParameters: { keyId: key.KeyId, encryptionContext: { app: 'billing' } },
      responseElements: null,
      readOnly: true,
      resources: [{ ARN: key.Arn, type: 'AWS::KMS::Key', accountId: '111122223333' }],
      additionalEventData: { keyMaterialId: key.CurrentKeyMaterialId },
      recipientAccountId: '111122223333',
    });
    expect(e.userAgent).toMatch(/aws-sdk-js/);
    expect(e.eventID).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.now() - Date.parse(e.eventTime)).toBeLessThan(60_000);
    expect(byRequest(dec.$metadata.requestId)[0]).toMatchObject({
      eventName: 'Decrypt', requestParameters: { encryptionContext: { app: 'billing' } },
      resources: [{ ARN: key.Arn }], additionalEventData: { keyMaterialId: key.CurrentKeyMaterialId },
    });
    expect(byRequest(gdk.$metadata.requestId)[0]).toMatchObject({ eventName: 'GenerateDataKey', requestParameters: { keyId: key.Arn, keySpec: 'AES_256' } });
    const created = records().find((r) => r.eventName === 'CreateKey' && r.responseElements?.keyMetadata?.keyId === key.KeyId);
    expect(created).toMatchObject({ readOnly: false, requestParameters: { description: 'audited' }, resources: [{ ARN: key.Arn }] });
    // Failures are recorded with AWS's error code, and for a failed authentication the claimed key id.
    const failed = records().filter((r) => r.errorCode);
    expect(failed).toContainEqual(expect.objectContaining({ eventName: 'Decrypt', errorCode: bad.name, resources: [expect.objectContaining({ ARN: key.Arn })] }));
    expect(failed).toContainEqual(
      expect.objectContaining({ eventName: 'Encrypt', errorCode: intruder.name, userIdentity: { type: 'Unknown', accessKeyId: ADMIN.accessKeyId } }),
    );
    // One event per call.
    for (const id of [enc, dec, gdk, rnd].map((r) => r.$metadata.requestId)) expect(byRequest(id)).toHaveLength(1);

    const text = files().map((f) => readFileSync(f, 'utf8')).join('');
    const b64 = (b: Uint8Array | undefined) => Buffer.from(b!).toString('base64');
    for (const secret of [
      plaintext, Buffer.from(plaintext).toString('base64'), b64(gdk.Plaintext), Buffer.from(gdk.Plaintext!).toString('hex'),
      b64(rnd.Plaintext), b64(enc.CiphertextBlob), b64(gdk.CiphertextBlob), h.token.userPin, ADMIN.secretAccessKey,
      'not-the-secret-key-at-all',
    ]) {
      expect(text).not.toContain(secret);
    }
  });

  it('keeps the seal key in the token: sensitive, non-extractable, not readable, not wrappable', () => {
    const objects = inspectToken(h.token, 'p11kms-audit:seal-key');
    expect(objects).toHaveLength(1);
    expect(objects[0]).toMatchObject({ token: true, priv: true, sensitive: true, extractable: false, neverExtractable: true });
    expect(objects[0]!.valueRead).toBe('CKR_ATTRIBUTE_SENSITIVE');
    expect(objects[0]!.wrapped).not.toBe('WRAPPED');
  });
});

describe('p11kms audit verify', () => {
  it('verifies an untouched trail across rotated files and a restart', async () => {
    const key = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    for (let i = 0; i < 30; i++) await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from(`n${i}`) }));
    await restart();
    for (let i = 0; i < 5; i++) await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from(`m${i}`) }));
    await h.daemon.stop(); // final seal; from here on the copies below are compared with a fixed chain head
    expect(files().length).toBeGreaterThanOrEqual(4);
    const { code, out } = await verifyCli([auditDir()]);
    expect(out).toMatch(/VERIFIED/);
    expect(out).not.toMatch(/ERROR/);
    expect(code).toBe(0);
  });

  it('finds an edited record and says where', async () => {
    const t = copyTrail();
    const lines = t.lines(0);
    const k = firstEvent(lines);
    const seq = seqOf(lines[k]!);
    const edited = lines[k]!.replace('"sourceIPAddress":"127.0.0.1"', '"sourceIPAddress":"203.0.113.9"');
    expect(edited).not.toBe(lines[k]);
    lines[k] = edited;
    t.write(0, lines);
    const { code, out } = await verifyCli([t.dir]);
    expect(code).toBe(1);
    expect(out).toContain(`ERROR ${basename(t.files[0]!)}:${k + 1} (seq ${seq}): seq ${seq}: its content does not match its hash`);
  });

  it('finds an edit whose hash chain was recomputed, at the next seal and against the token', async () => {
    const t = copyTrail();
    let prev: string | undefined;
    let edited: number | undefined;
    for (let i = 0; i < t.files.length; i++) {
      const out = t.lines(i).map((line) => {
        const rec = JSON.parse(line);
        delete rec.hash;
        if (edited === undefined && rec.eventName === 'Encrypt') {
          edited = rec.seq;
          rec.sourceIPAddress = '203.0.113.9';
        }
        if (prev !== undefined) rec.prev = prev;
        const { line: l, hash } = withHash(JSON.stringify(rec));
        prev = hash;
        return l;
      });
      t.write(i, out);
    }
    const { code, out } = await verifyCli([t.dir]);
    expect(code).toBe(1);
    expect(out).not.toMatch(/does not match its hash/);
    expect(out).toMatch(new RegExp(`seal at seq (\\d+) does not verify`));
    const firstBadSeal = Number(/seal at seq (\d+) does not verify/.exec(out)![1]);
    expect(firstBadSeal).toBeGreaterThan(edited!);
    expect(out).toMatch(/is not the seal the token vouches for: the trail was rewritten/);
  });

  it('finds an inserted record', async () => {
    const t = copyTrail();
    const lines = t.lines(0);
    const k = firstEvent(lines);
    lines.splice(k + 1, 0, lines[k]!); // a replayed copy of a genuine record
    t.write(0, lines);
    const { code, out } = await verifyCli([t.dir]);
    expect(code).toBe(1);
    expect(out).toMatch(new RegExp(`ERROR ${basename(t.files[0]!)}:${k + 2} \\(seq ${seqOf(lines[k]!)}\\): .*reordered or inserted`));
  });

  it('finds a deleted record', async () => {
    const t = copyTrail();
    const lines = t.lines(0);
    const k = firstEvent(lines);
    const gone = seqOf(lines[k]!);
    lines.splice(k, 1);
    t.write(0, lines);
    const { code, out } = await verifyCli([t.dir]);
    expect(code).toBe(1);
    expect(out).toContain(`ERROR ${basename(t.files[0]!)}:${k + 1} (seq ${gone + 1}): seq ${gone + 1}: seq jumps from ${gone - 1} to ${gone + 1}: 1 record(s) before it were deleted`);
  });

  it('finds reordered records', async () => {
    const t = copyTrail();
    const lines = t.lines(1);
    const k = firstEvent(lines);
    [lines[k], lines[k + 1]] = [lines[k + 1]!, lines[k]!];
    t.write(1, lines);
    const { code, out } = await verifyCli([t.dir]);
    expect(code).toBe(1);
    expect(out).toMatch(new RegExp(`ERROR ${basename(t.files[1]!)}:${k + 1} \\(seq \\d+\\): .*seq jumps`));
    expect(out).toMatch(new RegExp(`ERROR ${basename(t.files[1]!)}:${k + 2} \\(seq \\d+\\): .*reordered or inserted`));
  });

  it('finds a truncated trail: records cut from the end, a line cut in half, a file removed', async () => {
    const cut = copyTrail();
    const last = cut.files.length - 1;
    cut.write(last, cut.lines(last).slice(0, -3));
    let r = await verifyCli([cut.dir]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/truncated: the token's chain head is seq \d+ .* but the files end at seq \d+/);

    const torn = copyTrail();
    const text = readFileSync(torn.files[last]!, 'utf8');
    writeFileSync(torn.files[last]!, text.slice(0, text.length - 40));
    r = await verifyCli([torn.dir]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`ERROR ${basename(torn.files[last]!)}:\\d+: the last line is cut off`));

    const hole = copyTrail();
    rmSync(hole.files[1]!);
    r = await verifyCli([hole.dir]);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`ERROR ${basename(hole.files[2]!)}:1`);
    expect(r.out).toMatch(/a file between them is missing/);

    // A part of the trail verifies with --partial, and the hash chain alone without the token.
    r = await verifyCli(['--partial', ...cut.files.slice(1, 3)]);
    expect(r.out).toMatch(/VERIFIED/);
    r = await verifyCli(['--no-token', auditDir()]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/seals and the chain head were not checked/);
  });
});

describe('fail-closed', () => {
  /** Every write(2) from this process fails, as on a full disk. */
  function failWrites() {
    return vi.spyOn(fs, 'write').mockImplementation(((...args: unknown[]) => {
      const cb = args.at(-1) as (e: NodeJS.ErrnoException) => void;
      setImmediate(() => cb(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })));
    }) as unknown as typeof fs.write);
  }

  it('refuses operations with a 500 while the trail cannot be written, performs none of them, and recovers', async () => {
    await restart();
    const key = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const keysBefore = (await h.kms.send(new ListKeysCommand({}))).Keys!.length;
    const spy = failWrites();
    try {
      // The encryption happened in the token, but its event could not be written: no ciphertext is sent.
      const e1 = await failure(h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('x') })));
      expect(e1.name).toBe('KMSInternalException');
      expect(e1.$metadata?.httpStatusCode).toBe(500);
      expect(e1.message).toMatch(/audit trail cannot be written/);
      // While the trail is down, requests are refused before any work.
      const e2 = await failure(h.kms.send(new CreateKeyCommand({})));
      expect(e2.$metadata?.httpStatusCode).toBe(500);
      expect(e2.message).toMatch(/refused without being performed/);
      const e3 = await failure(h.kms.send(new GenerateDataKeyCommand({ KeyId: key.KeyId, KeySpec: 'AES_256' })));
      expect(e3.$metadata?.httpStatusCode).toBe(500);
      const scrape = await fetch(`${h.endpoint}/metrics`).then((r) => r.text());
      expect(scrape).toMatch(/^p11kms_audit_healthy 0$/m);
      // Not ready: a load balancer takes the node out (test/e2e/cluster.test.ts shows the others serving).
      const ready = await fetch(`${h.endpoint}/health/ready`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { audit: unknown }).audit).toEqual({ enabled: true, failClosed: true, state: 'failing' });
    } finally {
      spy.mockRestore();
    }
    await new Promise((r) => setTimeout(r, 1100)); // the trail retries at most once a second
    await until(async () => (await fetch(`${h.endpoint}/health/ready`)).status === 200);
    expect((await h.kms.send(new ListKeysCommand({}))).Keys!.length).toBe(keysBefore);
    const ok = await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('y') }));
    expect(ok.CiphertextBlob).toBeDefined();
    await h.daemon.stop();
    const { code, out } = await verifyCli([auditDir()]);
    expect(out).toMatch(/a write failed/);
    expect(code).toBe(0);
  });

  it('with failClosed off, serves requests whose events cannot be written', async () => {
    await restart({ P11KMS_AUDIT_FAIL_CLOSED: 'false' });
    const key = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const spy = failWrites();
    try {
      const enc = await h.kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('x') }));
      expect(enc.CiphertextBlob).toBeDefined();
    } finally {
      spy.mockRestore();
    }
  });
});
