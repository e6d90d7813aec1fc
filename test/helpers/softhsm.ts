import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const ROOT = resolve(import.meta.dirname, '../..');

export interface TempToken {
  dir: string;
  conf: string;
  label: string;
  userPin: string;
  soPin: string;
  cleanup(): void;
}

/**
 * A real SoftHSM2 token in a fresh temp dir, made by the same script development uses.
 * SOFTHSM2_CONF is set for this process: SoftHSM reads it at C_Initialize.
 */
export function createTempToken(label = 'p11kms-test'): TempToken {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-test-'));
  const tokenDir = join(dir, 'softhsm');
  execFileSync(join(ROOT, 'softhsm/create-token.sh'), [tokenDir, label], { stdio: ['ignore', 'ignore', 'ignore'] });
  const conf = join(tokenDir, 'softhsm2.conf');
  process.env.SOFTHSM2_CONF = conf;
  return {
    dir,
    conf,
    label,
    userPin: readFileSync(join(tokenDir, 'user.pin'), 'utf8'),
    soPin: readFileSync(join(tokenDir, 'so.pin'), 'utf8'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
