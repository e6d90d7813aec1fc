import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NSS_MODULE = '/usr/lib/x86_64-linux-gnu/libsoftokn3.so';
/** The softoken slot that stores token objects (slot 1, "NSS Generic Crypto Services", cannot). */
export const NSS_TOKEN_LABEL = 'NSS Certificate DB';

export interface NssDb {
  dir: string;
  label: string;
  userPin: string;
  /** C_Initialize's init arguments that open this database. */
  libraryParameters: string;
  cleanup(): void;
}

/**
 * A real NSS softoken database in a fresh temp dir, made with certutil (libnss3-tools), with a
 * random password: NSS's user PIN.
 */
export function createNssDb(): NssDb {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-nss-'));
  const db = join(dir, 'nssdb');
  execFileSync('mkdir', ['-p', db]);
  const userPin = `nss-${Math.random().toString(36).slice(2, 12)}`;
  const pw = join(dir, 'pw');
  writeFileSync(pw, `${userPin}\n`, { mode: 0o600 });
  execFileSync('certutil', ['-N', '-d', `sql:${db}`, '-f', pw], { stdio: ['ignore', 'ignore', 'pipe'] });
  rmSync(pw);
  return {
    dir,
    label: NSS_TOKEN_LABEL,
    userPin,
    libraryParameters: `configdir='sql:${db}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=`,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
