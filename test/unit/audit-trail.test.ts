import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fs, { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { withHash, type Anchor } from '../../src/audit/chain.js';
import { sanitize } from '../../src/audit/sanitize.js';
import type { Sealer } from '../../src/audit/sealer.js';
import { AuditTrail, type AuditTrailOptions } from '../../src/audit/trail.js';
import { AuditUnavailable } from '../../src/audit/types.js';
import { verifyFiles } from '../../src/audit/verify.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';

/** The token's part, in memory: an HMAC key and the chain head. */
class MemorySealer implements Sealer {
  private readonly key = randomBytes(32);
  anchor: Anchor | undefined;
  async mac(text: string) {
    return createHmac('sha256', this.key).update(text).digest('hex');
  }
  async verify(text: string, mac: string) {
    const a = Buffer.from(await this.mac(text), 'hex');
    const b = Buffer.from(mac, 'hex');
    return a.length === b.length && timingSafeEqual(a, b);
  }
  async readAnchor() {
    return this.anchor;
  }
  async writeAnchor(a: Anchor) {
    this.anchor = a;
  }
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function setup(overrides: Partial<AuditTrailOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-audit-'));
  dirs.push(dir);
  const sealer = new MemorySealer();
  const opts: AuditTrailOptions = {
    dir, durability: 'fsync', fsyncIntervalMs: 1000, failClosed: true, maxFileBytes: 64 * 1024 * 1024,
    rotateIntervalMs: 3600_000, sealEveryEvents: 50, sealIntervalMs: 60_000, region: 'us-east-1', accountId: '111122223333',
    sealer, clock: systemClock, log: silentLogger, ...overrides,
  };
  const files = () => readdirSync(dir).sort().map((f) => join(dir, f));
  return { dir, sealer, opts, files, verify: () => verifyFiles(files(), { sealer }) };
}

const event = (i: number) => ({
  eventName: 'Encrypt',
  principal: { type: 'Root' as const, arn: 'arn:aws:iam::111122223333:root', accountId: '111122223333', accessKeyId: 'AKIDEXAMPLE' },
  requestId: `req-${i}`,
  requestParameters: { KeyId: 'alias/x', Plaintext: Buffer.from(`secret-${i}`), EncryptionContext: { n: String(i) } },
});

describe('audit trail writer', () => {
  it('chains concurrent events in one order, rotates by size and seals; the verifier accepts the result', async () => {
    const t = setup({ maxFileBytes: 16 * 1024 });
    const trail = await AuditTrail.open(t.opts);
    for (let wave = 0; wave < 10; wave++) {
      await Promise.all(Array.from({ length: 30 }, (_, i) => trail.record(event(wave * 30 + i))));
    }
    await trail.close();
    expect(t.files().length).toBeGreaterThan(3);
    const report = await t.verify();
    expect(report.findings.filter((f) => f.severity === 'error')).toEqual([]);
    expect(report.events).toBe(300);
    expect(report.sealedThrough).toBe(report.lastSeq);
    expect(t.sealer.anchor?.seq).toBe(report.lastSeq);
    // Group commit: 300 concurrent events did not need 300 writes, yet each resolved after its write.
    const text = t.files().map((f) => readFileSync(f, 'utf8')).join('');
    expect(text).not.toContain('secret-');
    for (let i = 0; i < 300; i++) expect(text).toContain(`"requestID":"req-${i}"`);
  });

  it('continues the chain after a restart, and after a crash (torn last line) with a recorded warning', async () => {
    const t = setup();
    let trail = await AuditTrail.open(t.opts);
    await trail.record(event(1));
    await trail.close();
    trail = await AuditTrail.open(t.opts);
    await trail.record(event(2));
    // Crash: no close(), and the last write was cut short.
    const last = t.files().at(-1)!;
    appendFileSync(last, '{"eventVersion":"1.11","userIdent');
    trail = await AuditTrail.open(t.opts);
    await trail.record(event(3));
    await trail.close();
    const report = await t.verify();
    expect(report.ok).toBe(true);
    expect(report.events).toBe(3);
    expect(report.findings.map((f) => f.message).join('\n')).toMatch(/stopped without closing it/);
    const start = JSON.parse(readFileSync(t.files().at(-1)!, 'utf8').split('\n')[0]!);
    expect(start.recovery).toMatchObject({ reason: 'unclean-shutdown', previousFile: last.split('/').at(-1) });
  });

  it('records at restart that the files were altered or cut while the daemon was down', async () => {
    const t = setup();
    let trail = await AuditTrail.open(t.opts);
    for (let i = 0; i < 5; i++) await trail.record(event(i));
    await trail.close();
    // Edit a complete line (keeping it valid JSON, with a recomputed hash: only the chain links show it).
    const file = t.files()[0]!;
    const lines = readFileSync(file, 'utf8').split('\n');
    const rec = JSON.parse(lines[3]!);
    delete rec.hash;
    rec.eventName = 'Decrypt';
    lines[3] = withHash(JSON.stringify(rec)).line;
    writeFileSync(file, lines.join('\n'));
    trail = await AuditTrail.open(t.opts);
    await trail.close();
    const report = await t.verify();
    expect(report.ok).toBe(false);
    const errors = report.findings.filter((f) => f.severity === 'error');
    // Where: the edited record no longer links to the next one (line 5), and the restart recorded it.
    expect(errors).toContainEqual(expect.objectContaining({ line: 5, message: expect.stringMatching(/does not link/) }));
    expect(errors.map((f) => f.message).join('\n')).toMatch(/altered while the daemon was down/);
  });

  it('refuses events while the disk fails, says so in the next file, and the trail still verifies', async () => {
    const t = setup();
    const trail = await AuditTrail.open(t.opts);
    await trail.record(event(1));
    const spy = vi.spyOn(fs, 'write').mockImplementation(((...args: unknown[]) => {
      const cb = args.at(-1) as (e: NodeJS.ErrnoException) => void;
      cb(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
    }) as unknown as typeof fs.write);
    await expect(trail.record(event(2))).rejects.toBeInstanceOf(AuditUnavailable);
    expect(await trail.ready()).toBe(false);
    await expect(trail.record(event(3))).rejects.toBeInstanceOf(AuditUnavailable);
    spy.mockRestore();
    await new Promise((r) => setTimeout(r, 1100)); // recovery is tried at most once a second
    expect(await trail.ready()).toBe(true);
    await trail.record(event(4));
    await trail.close();
    const report = await t.verify();
    expect(report.ok).toBe(true);
    expect(report.events).toBe(2);
    expect(report.findings.map((f) => f.message).join('\n')).toMatch(/a write failed/);
  });
});

describe('sanitize', () => {
  it('drops blobs and credentials at any depth, keeps encryption contexts verbatim, uses lower camel case', () => {
    const out = sanitize({
      KeyId: 'alias/a',
      Plaintext: Buffer.from('p'),
      CiphertextBlob: 'AAAA',
      GrantTokens: ['t'],
      EncryptionContext: { Password: 'user-data', Department: 'x' },
      XksProxyAuthenticationCredential: { AccessKeyId: 'A', RawSecretAccessKey: 'S' },
      Tags: [{ TagKey: 'k', TagValue: 'v' }],
      Recipient: { AttestationDocument: Buffer.from('d'), KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' },
    });
    expect(out).toEqual({
      keyId: 'alias/a',
      encryptionContext: { Password: 'user-data', Department: 'x' },
      tags: [{ tagKey: 'k', tagValue: 'v' }],
      recipient: { keyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' },
    });
    expect(sanitize({ Plaintext: Buffer.from('x') })).toBeNull();
  });
});
