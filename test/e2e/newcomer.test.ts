/**
 * What a new user does right after `./scripts/start` (in a temp data directory instead of ./var,
 * on port 0): every `p11kms` subcommand, run with no environment but that data directory, and
 * README's curl walkthrough, extracted from README.md and run verbatim with the real curl and
 * openssl. Also the file modes of what the daemon created.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
let dir: string;
let dataDir: string;
let start: ChildProcess;
let exited: Promise<number | null>;
let startOutput = '';

/** What a user's shell has: no P11KMS_*, no SOFTHSM2_CONF, only the data directory given to ./scripts/start. */
const userEnv = () => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, P11KMS_DATA_DIR: dataDir });

function p11kms(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist/entry.cjs'), ...args], { cwd: ROOT, env: userEnv(), encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'p11kms-newcomer-'));
  dataDir = join(dir, 'var');
  start = spawn(join(ROOT, 'scripts/start'), [], { cwd: ROOT, env: { ...userEnv(), P11KMS_PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
  start.stdout!.on('data', (d: Buffer) => (startOutput += d.toString()));
  start.stderr!.on('data', (d: Buffer) => (startOutput += d.toString()));
  exited = new Promise((r) => start.once('exit', (code) => r(code)));
  const deadline = Date.now() + 120_000;
  while (p11kms('status').code !== 0) {
    if (Date.now() > deadline || start.exitCode !== null) throw new Error(`./scripts/start did not come up:\n${startOutput}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}, 150_000);

afterAll(async () => {
  if (start && start.exitCode === null) {
    start.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('p11kms, right after ./scripts/start', () => {
  it('prints help without arguments and for --help, and each subcommand has --help', () => {
    for (const args of [[], ['--help'], ['help']]) {
      const r = p11kms(...args);
      expect(r.code).toBe(0);
      expect(r.out).toContain('Usage: p11kms <command>');
      expect(r.out).toContain('config check');
    }
    for (const sub of [['serve'], ['status'], ['credentials'], ['audit'], ['audit', 'verify'], ['config'], ['config', 'check'], ['keys'], ['keys', 'unused']]) {
      const r = p11kms(...sub, '--help');
      expect([sub.join(' '), r.code]).toEqual([sub.join(' '), 0]);
      expect(r.out).toMatch(/Usage: p11kms/);
    }
    expect(readFileSync(join(ROOT, 'dist/entry.cjs'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('exits 2 for usage errors and 3 when the daemon is not there', () => {
    expect(p11kms('frobnicate').code).toBe(2);
    expect(p11kms('status', '--frob').code).toBe(2);
    expect(p11kms('config', 'frob').code).toBe(2);
    const away = p11kms('status', '--socket', join(dir, 'nothing.sock'));
    expect(away.code).toBe(3);
    expect(away.err).toContain('cannot reach the daemon');
  });

  it('status reports the token, pool, key stores, audit and listeners', () => {
    const r = p11kms('status');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^p11kms: ready/);
    expect(r.out).toMatch(/token: +p11kms-dev, ready/);
    expect(r.out).toMatch(/session pool: +\d+\/8 open/);
    expect(r.out).toContain('audit trail:       writing');
    expect(r.out).toContain(join(dataDir, 'sidecar.sock'));
    const json = JSON.parse(p11kms('status', '--json').out);
    expect(json).toMatchObject({ ready: true, token: { label: 'p11kms-dev' }, audit: { enabled: true, healthy: true } });
  });

  it('config check opens the module, token and PIN of ./scripts/start without SOFTHSM2_CONF', () => {
    const r = p11kms('config', 'check');
    expect([r.code, r.err]).toEqual([0, '']);
    expect(r.out).toContain("token: 'p11kms-dev' on /usr/lib/softhsm/libsofthsm2.so: found, logged in");
    expect(r.out.trim().endsWith('OK')).toBe(true);
    expect(r.out).not.toContain(readFileSync(join(dataDir, 'softhsm', 'user.pin'), 'utf8'));
    const bad = p11kms('config', 'check', '--config', join(dir, 'missing.json'));
    expect(bad.code).toBe(2);
  });

  it("README's curl walkthrough runs verbatim", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const block = /<!-- walkthrough:curl[^>]*-->\n```sh\n([\s\S]*?)\n```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const cwd = mkdtempSync(join(dir, 'walk-'));
    // stdin not a socket: Debian's bash reads /etc/bash.bashrc when it thinks it runs under rshd.
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', block!], { cwd, env: userEnv(), encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] });
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout.split('\n')).toEqual(expect.arrayContaining([
      '{}', '4111 1111 1111 1111', 'alice@example.com', 'small file: round trip OK', 'large file: envelope round trip OK',
    ]));
    // The encrypted file is not the plaintext, and the data key beside it is a KMS ciphertext, not a key.
    expect(readFileSync(join(cwd, 'big.bin.enc')).subarray(0, 8).toString()).toBe('Salted__');
    expect(statSync(join(cwd, 'big.bin.key')).size).toBeGreaterThan(32);
  });

  it('keys unused lists the walkthrough key for 0 days and nothing for 30 days (it was just used)', () => {
    expect(p11kms('keys', 'unused').code).toBe(2);
    const none = p11kms('keys', 'unused', '--days', '30');
    expect([none.code, none.out]).toEqual([0, 'no key unused for 30 day(s)\n']);
    const all = p11kms('keys', 'unused', '--days', '0', '--json');
    expect(all.code).toBe(0);
    const keys = JSON.parse(all.out) as { lastOperation?: string }[];
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.some((k) => k.lastOperation === 'Decrypt' || k.lastOperation === 'Encrypt' || k.lastOperation === 'GenerateDataKey')).toBe(true);
  });

  it('credentials and audit verify work the same way', () => {
    const creds = p11kms('credentials', 'list');
    expect(creds.code).toBe(0);
    expect(creds.out).toContain('arn:aws:iam::111122223333:root');
    const audit = p11kms('audit', 'verify');
    expect([audit.code, audit.err]).toEqual([0, '']);
    expect(audit.out).toMatch(/VERIFIED/);
  });

  it('created the database, audit files and sidecar socket for the daemon user only', () => {
    const mode = (p: string) => statSync(p).mode & 0o777;
    const db = join(dataDir, 'metadata.sqlite');
    expect(mode(db)).toBe(0o600);
    for (const f of [`${db}-wal`, `${db}-shm`]) if (existsSync(f)) expect(mode(f)).toBe(0o600);
    const audit = readdirSync(join(dataDir, 'audit'));
    expect(audit.length).toBeGreaterThan(0);
    for (const f of audit) expect([f, mode(join(dataDir, 'audit', f))]).toEqual([f, 0o600]);
    expect(mode(join(dataDir, 'sidecar.sock'))).toBe(0o600);
    expect(mode(join(dataDir, 'p11kms.sock'))).toBe(0o600);
  });
});
