import { execFileSync } from 'node:child_process';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A public key from GetPublicKey's DER SubjectPublicKeyInfo, parsed by node:crypto. */
export const spkiKey = (der: Uint8Array): KeyObject => createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });

export const spkiPem = (der: Uint8Array): string => spkiKey(der).export({ type: 'spki', format: 'pem' }) as string;

/**
 * DER ECDSA-Sig-Value → r‖s (IEEE P1363, what JWS wants). Written here, independently of the
 * daemon's own encoder, so a bug there cannot hide in the test.
 */
export function derToP1363(der: Uint8Array, size: number): Buffer {
  const b = Buffer.from(der);
  if (b[0] !== 0x30) throw new Error('not a SEQUENCE');
  let at = b[1]! & 0x80 ? 2 + (b[1]! & 0x7f) : 2;
  const parts: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    if (b[at] !== 0x02) throw new Error('not an INTEGER');
    const len = b[at + 1]!;
    let v = b.subarray(at + 2, at + 2 + len);
    at += 2 + len;
    while (v.length > size && v[0] === 0) v = v.subarray(1);
    parts.push(Buffer.concat([Buffer.alloc(size - v.length), v]));
  }
  return Buffer.concat(parts);
}

export const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Runs the openssl CLI in a temp dir holding the given files; returns stdout (throws on non-zero exit). */
export function openssl(files: Record<string, Uint8Array | string>, args: (dir: string) => string[]): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'p11kms-openssl-'));
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
    return execFileSync('openssl', args(dir), { stdio: ['ignore', 'pipe', 'pipe'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const b64url = (b: Uint8Array | string): string => Buffer.from(b).toString('base64url');
