/**
 * Principals and credentials: the admin command line over the Unix socket, secrets sealed under
 * a key kept in the token (never in clear in the metadata store), enable/disable/delete taking
 * effect on the next request, identity policies, and credentials surviving a restart.
 */
import { DescribeKeyCommand, ListKeysCommand } from '@aws-sdk/client-kms';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREDENTIALS_KEK_LABEL } from '../../src/kms/secret-box.js';
import { adminCall, runCredentialsCli } from '../../src/cli/credentials.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { ACCOUNT as A, ADMIN, client, failure, startHarness, storedBytes, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { OTHER_ACCOUNT as B } from '../helpers/principals.js';

const ROOT = resolve(import.meta.dirname, '../..');
let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

/** Runs the command line in this process, capturing its output. */
async function cli(...args: string[]) {
  let out = '';
  let err = '';
  const code = await runCredentialsCli([...args, '--socket', h.daemon.socketPath], {}, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

const listKeys = (creds: { accessKeyId: string; secretAccessKey: string }) => client(h.endpoint, creds).send(new ListKeysCommand({}));

describe('p11kms credentials', () => {
  let created: { AccessKeyId: string; SecretAccessKey: string; PrincipalArn: string };

  it('create prints the secret once; the new principal signs its own requests under its identity policy', async () => {
    const policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:ListKeys', Resource: '*' }] });
    const r = await cli('create', '--user', 'cli-alice', '--policy', policy, '--description', 'test user');
    expect(r.code).toBe(0);
    created = JSON.parse(r.out);
    expect(created.PrincipalArn).toBe(`arn:aws:iam::${A}:user/cli-alice`);
    expect(created.AccessKeyId).toMatch(/^AKIA[A-Z2-7]{16}$/);
    expect(created.SecretAccessKey).toMatch(/^[A-Za-z0-9+/]{40}$/);
    expect(r.err).toMatch(/shown only this once/);
    const creds = { accessKeyId: created.AccessKeyId, secretAccessKey: created.SecretAccessKey };
    await listKeys(creds);
    const e = await failure(client(h.endpoint, creds).send(new DescribeKeyCommand({ KeyId: 'alias/anything' })));
    expect(e.name).toBe('NotFoundException');
  });

  it('list never shows a secret, in the table or in JSON', async () => {
    const table = await cli('list');
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/ACCESS KEY ID\s+STATE\s+PRINCIPAL/);
    expect(table.out).toContain(created.AccessKeyId);
    expect(table.out).toContain(ADMIN.accessKeyId);
    const json = await cli('list', '--json');
    const rows = JSON.parse(json.out) as Record<string, unknown>[];
    const row = rows.find((x) => x.AccessKeyId === created.AccessKeyId)!;
    expect(row).toMatchObject({ PrincipalArn: created.PrincipalArn, Enabled: true, PrincipalType: 'IAMUser', Description: 'test user', PolicyNames: ['default'] });
    for (const text of [table.out, json.out]) {
      expect(text).not.toContain(created.SecretAccessKey);
      expect(text).not.toContain(ADMIN.secretAccessKey);
    }
  });

  it('secrets are sealed under a non-extractable key in the token, never stored in clear', async () => {
    // The database file and its write-ahead log, wherever the row currently is (or the PostgreSQL database).
    const bytes = storedBytes(h.config);
    expect(bytes.includes(Buffer.from(created.AccessKeyId))).toBe(true);
    expect(bytes.includes(Buffer.from(created.SecretAccessKey))).toBe(false);
    expect(bytes.includes(Buffer.from(created.SecretAccessKey, 'base64'))).toBe(false);
    const [kek] = inspectToken(h.token, CREDENTIALS_KEK_LABEL);
    expect(kek).toMatchObject({ token: true, priv: true, sensitive: true, extractable: false });
    expect(kek!.valueRead).toMatch(/CKR_ATTRIBUTE_SENSITIVE/);
    expect(kek!.wrapped).not.toBe('WRAPPED');
  });

  it('disable, enable and delete take effect on the next request', async () => {
    const creds = { accessKeyId: created.AccessKeyId, secretAccessKey: created.SecretAccessKey };
    expect((await cli('disable', created.AccessKeyId)).code).toBe(0);
    const e = await failure(listKeys(creds));
    expect(e.name).toBe('UnrecognizedClientException');
    expect((await cli('enable', created.AccessKeyId)).code).toBe(0);
    await listKeys(creds);
    expect((await cli('delete', created.AccessKeyId)).code).toBe(0);
    expect((await failure(listKeys(creds))).name).toBe('UnrecognizedClientException');
    const again = await cli('delete', created.AccessKeyId);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/No credential with access key id/);
  });

  it('roles, other accounts, and identity policies managed separately', async () => {
    const role = JSON.parse((await cli('create', '--role', 'cli-app')).out) as typeof created;
    expect(role.PrincipalArn).toBe(`arn:aws:iam::${A}:role/cli-app`);
    const creds = { accessKeyId: role.AccessKeyId, secretAccessKey: role.SecretAccessKey };
    expect((await failure(listKeys(creds))).name).toBe('AccessDeniedException');
    const file = join(h.token.dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:List*', Resource: '*' }] }));
    expect((await cli('put-policy', '--arn', role.PrincipalArn, '--policy-name', 'lister', '--policy-file', file)).code).toBe(0);
    await listKeys(creds);
    const shown = await cli('get-policies', '--arn', role.PrincipalArn);
    expect(Object.keys(JSON.parse(shown.out))).toEqual(['lister']);
    expect((await cli('delete-policy', '--arn', role.PrincipalArn, '--policy-name', 'lister')).code).toBe(0);
    expect((await failure(listKeys(creds))).name).toBe('AccessDeniedException');

    const otherRoot = JSON.parse((await cli('create', '--root', '--account', B)).out) as typeof created;
    expect(otherRoot.PrincipalArn).toBe(`arn:aws:iam::${B}:root`);
    const keys = await listKeys({ accessKeyId: otherRoot.AccessKeyId, secretAccessKey: otherRoot.SecretAccessKey });
    expect(keys.Keys).toEqual([]);
  });

  it('refuses bad input with a reason and a non-zero exit', async () => {
    const bad = await cli('put-policy', '--arn', `arn:aws:iam::${A}:user/x`, '--policy-name', 'p', '--policy', '{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/MalformedPolicyDocument: Has prohibited field Principal/);
    expect((await cli('create', '--user', 'bad name')).code).toBe(1);
    expect((await cli('create', '--user', 'x', '--role', 'y')).code).toBe(2);
    expect((await cli('create', '--root', '--policy', '{}')).code).toBe(1);
    expect((await cli('frobnicate')).code).toBe(2);
    const admin = await cli('disable', ADMIN.accessKeyId);
    expect(admin.code).toBe(1);
    expect(admin.err).toMatch(/configuration/);
    const unreachable = await runCredentialsCli(['list', '--socket', join(h.token.dir, 'nope.sock')], {}, { out: () => {}, err: () => {} });
    expect(unreachable).toBe(1);
  });

  it('the admin interface is served on the Unix socket only, not on TCP', async () => {
    const res = await fetch(`${h.endpoint}/admin/v1/ListCredentials`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain('AccessKeyId');
    await expect(adminCall(h.daemon.socketPath, 'NoSuchAction')).rejects.toThrow(/Unknown admin action/);
  });

  it('the built binary runs the command line', async () => {
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [join(ROOT, 'dist/entry.cjs'), 'credentials', 'list', '--json', '--socket', h.daemon.socketPath]);
    expect(JSON.parse(stdout).some((c: { AccessKeyId: string }) => c.AccessKeyId === ADMIN.accessKeyId)).toBe(true);
  });

  it('credentials survive a restart: secrets are unsealed in the token at start-up', async () => {
    const made = JSON.parse((await cli('create', '--user', 'survivor', '--policy', JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:ListKeys', Resource: '*' }] }))).out) as typeof created;
    const disabled = JSON.parse((await cli('create', '--user', 'sleeper')).out) as typeof created;
    await cli('disable', disabled.AccessKeyId);
    await h.daemon.stop();
    const daemon = await startDaemon(h.config, silentLogger);
    h = { ...h, daemon, endpoint: `http://127.0.0.1:${daemon.port}`, kms: client(`http://127.0.0.1:${daemon.port}`) };
    await listKeys({ accessKeyId: made.AccessKeyId, secretAccessKey: made.SecretAccessKey });
    expect((await failure(listKeys({ accessKeyId: disabled.AccessKeyId, secretAccessKey: disabled.SecretAccessKey }))).name).toBe('UnrecognizedClientException');
  });
});
