/**
 * The second most used AWS SDK: boto3 runs the core, lifecycle, asymmetric and import flows
 * (test/boto3/kms_flows.py) against the real daemon. python3, boto3 and cryptography come from
 * ./scripts/setup; their absence fails the test.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ADMIN, REGION, startHarness, type Harness } from '../helpers/daemon.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

it('boto3 runs the core, lifecycle, asymmetric and import flows', async () => {
  const script = resolve(import.meta.dirname, '../boto3/kms_flows.py');
  const { stdout } = await promisify(execFile)('python3', [script], {
    env: {
      PATH: process.env.PATH, HOME: process.env.HOME,
      P11KMS_ENDPOINT: h.endpoint, AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: ADMIN.accessKeyId, AWS_SECRET_ACCESS_KEY: ADMIN.secretAccessKey,
      AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    },
    timeout: 120_000,
  }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`boto3 flows failed: ${e.stdout ?? ''} ${e.stderr ?? e.message}`);
  });
  const result = JSON.parse(stdout.trim().split('\n').pop()!) as { ok: boolean; ran: string[]; skipped: string[] };
  expect(result.ok).toBe(true);
  for (const name of ['encrypt', 're_encrypt', 'schedule_key_deletion', 'rsa sign, verified by cryptography', 'verify_mac', 'decrypt with imported material']) {
    expect(result.ran).toContain(name);
  }
  expect(result.ran.length).toBeGreaterThanOrEqual(30);
}, 180_000);
