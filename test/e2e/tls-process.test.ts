/**
 * The daemon as a process (dist/entry.cjs) and its listener security: a non-loopback address
 * without TLS refuses to start with a clear message; the documented override starts and says so
 * in the log; with TLS, SIGHUP serves renewed certificate files without a restart.
 */
import { EncryptCommand, ListKeysCommand } from '@aws-sdk/client-kms';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTempToken, SOFTHSM_MODULE, type TempToken } from '../helpers/softhsm.js';
import { devTls, handshake, httpsClient, serialOf } from '../helpers/tls.js';

const ROOT = resolve(import.meta.dirname, '../..');
const cleanups: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanups.reverse()) c();
});

function daemonEnv(token: TempToken, extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    SOFTHSM2_CONF: token.conf,
    P11KMS_DATA_DIR: join(token.dir, 'data'),
    P11KMS_PORT: '0',
    P11KMS_PKCS11_MODULE: SOFTHSM_MODULE,
    P11KMS_TOKEN_LABEL: token.label,
    P11KMS_PIN_FILE: join(token.dir, 'softhsm', 'user.pin'),
    P11KMS_AUDIT: 'false',
    ...extra,
  };
}

/** Starts the daemon and waits for "p11kms listening"; returns the process, its port and its log so far. */
async function start(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; port: number; log: () => string }> {
  const child = spawn(process.execPath, [join(ROOT, 'dist/entry.cjs'), 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!/"msg":"p11kms listening"/.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`daemon did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = JSON.parse(output.split('\n').find((l) => l.includes('p11kms listening'))!).port as number;
  return { child, port, log: () => output };
}

const stopped = (child: ChildProcess) => new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', r)));

describe('listener security of the daemon process', () => {
  it('refuses a non-loopback address without TLS, naming both ways out', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'dist/entry.cjs'), 'serve'], {
      env: { PATH: process.env.PATH, P11KMS_HOST: '0.0.0.0', P11KMS_PIN: '1234', P11KMS_DATA_DIR: join(tmpdir(), 'p11kms-never-created') },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/host '0\.0\.0\.0' is not a loopback address/);
    expect(r.stderr).toMatch(/P11KMS_TLS_CERT/);
    expect(r.stderr).toMatch(/P11KMS_PLAIN_HTTP_BEHIND_TLS_PROXY=true/);
  });

  it('starts with the documented override and logs it', async () => {
    const token = createTempToken();
    cleanups.push(() => token.cleanup());
    const d = await start(daemonEnv(token, { P11KMS_HOST: '0.0.0.0', P11KMS_PLAIN_HTTP_BEHIND_TLS_PROXY: 'true' }));
    expect(d.log()).toMatch(/"level":40,[^\n]*"msg":"plainHttpBehindTlsProxy: the AWS API serves plain HTTP on a non-loopback address/);
    d.child.kill('SIGTERM');
    expect(await stopped(d.child)).toBe(0);
  }, 40_000);

  it('reloads the certificate on SIGHUP, keeping open connections and the process', async () => {
    const token = createTempToken();
    const ca = devTls();
    cleanups.push(() => token.cleanup(), () => ca.cleanup());
    const live = mkdtempSync(join(ca.dir, 'live-'));
    const files = { cert: join(live, 'cert.pem'), key: join(live, 'key.pem') };
    copyFileSync(ca.files.cert, files.cert);
    copyFileSync(ca.files.key, files.key);
    const d = await start(daemonEnv(token, { P11KMS_TLS_CERT: files.cert, P11KMS_TLS_KEY: files.key, P11KMS_TLS_WATCH_INTERVAL_MS: '0' }));
    const endpoint = `https://127.0.0.1:${d.port}`;
    const kms = httpsClient(endpoint, ca);
    await kms.send(new ListKeysCommand({}));
    const first = await handshake(d.port, { ca: ca.ca });
    first.socket.destroy();
    expect(first.serial).toBe(serialOf(ca.files.cert));

    // A renewed certificate of the same CA, moved into place; SIGHUP.
    const next = mkdtempSync(join(ca.dir, 'next-'));
    copyFileSync(ca.files.ca, join(next, 'ca.pem'));
    copyFileSync(join(ca.dir, 'ca.key'), join(next, 'ca.key'));
    const renewed = devTls([], next);
    renameSync(renewed.files.cert, files.cert);
    renameSync(renewed.files.key, files.key);
    const serial = serialOf(files.cert);
    expect(serial).not.toBe(first.serial);
    d.child.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    while (!d.log().includes('TLS certificate reloaded')) {
      if (Date.now() > deadline || d.child.exitCode !== null) throw new Error(`no reload:\n${d.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const after = await handshake(d.port, { ca: ca.ca });
    after.socket.destroy();
    expect(after.serial).toBe(serial);
    // The keep-alive connection from before the reload still serves.
    await kms.send(new ListKeysCommand({}));
    await expect(kms.send(new EncryptCommand({ KeyId: 'alias/none', Plaintext: Buffer.from('x') }))).rejects.toThrow(/alias/i);
    kms.destroy();
    d.child.kill('SIGTERM');
    expect(await stopped(d.child)).toBe(0);
  }, 60_000);
});
