import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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

export interface ExtraToken {
  label: string;
  userPin: string;
  soPin: string;
  /** The token's own directory under the SoftHSM2 token dir (its files: token.object, keys). */
  tokenDir(): string;
}

/**
 * One more token in the same SoftHSM2 token directory (same SOFTHSM2_CONF, so the daemon's one
 * module instance sees both), with its own random PINs: what a custom key store connects to.
 */
export function addToken(t: TempToken, label: string): ExtraToken {
  const softhsm = join(t.dir, 'softhsm');
  const pinDir = join(softhsm, label);
  execFileSync(join(ROOT, 'softhsm/create-token.sh'), [softhsm, label, pinDir], { stdio: ['ignore', 'ignore', 'ignore'] });
  return {
    label,
    userPin: readFileSync(join(pinDir, 'user.pin'), 'utf8'),
    soPin: readFileSync(join(pinDir, 'so.pin'), 'utf8'),
    tokenDir() {
      const tokens = join(softhsm, 'tokens');
      for (const d of readdirSync(tokens)) {
        try {
          const info = readFileSync(join(tokens, d, 'token.object'));
          if (info.includes(Buffer.from(label))) return join(tokens, d);
        } catch {
          /* not a token directory */
        }
      }
      throw new Error(`no token directory for ${label}`);
    },
  };
}
