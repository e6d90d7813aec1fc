import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { Secret } from '../secret.js';

/**
 * TLS settings shared by every TCP listener (the AWS API and the XKS proxy): the config-file
 * shape, reading the PEM files, and the loopback rule. The listener itself is in listener.ts.
 */

export { isLoopbackHost } from './loopback.js';

/** The `tls` object of a listener in the config file (paths relative to the working directory). */
export const tlsFileFields = {
  certFile: z.string().min(1),
  keyFile: z.string().min(1),
  /** PEM bundle of the CAs whose client certificates are accepted: turns mutual TLS on. */
  clientCaFile: z.string().min(1).optional(),
  /** Accepted client certificate subject common names (needs clientCaFile); any CN of the CA when unset. */
  clientSubjectNames: z.array(z.string().min(1)).min(1).optional(),
  /** How often the files are checked for a change (ms); 0 reloads on SIGHUP only. */
  watchIntervalMs: z.number().int().min(0).max(3_600_000).optional(),
};

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  clientCaFile?: string | undefined;
}

export interface TlsSettings {
  cert: string;
  key: Secret;
  /** Mutual TLS: client certificates must chain to one of these CAs. */
  clientCa?: string | undefined;
  clientSubjectNames?: string[] | undefined;
  /** Where cert, key and clientCa were read from; a reload reads them again. Absent: no reload. */
  files?: TlsFiles | undefined;
  /** File change polling interval (ms); 0 or absent with files: SIGHUP only. */
  watchIntervalMs?: number | undefined;
}

export const DEFAULT_WATCH_INTERVAL_MS = 10_000;

/** The PEM texts of `files`, or an error naming the file (never its content). */
export function readTlsFiles(files: TlsFiles, what: string): Pick<TlsSettings, 'cert' | 'key' | 'clientCa'> {
  const read = (path: string, kind: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      throw new Error(`${what}: cannot read the ${kind} file ${path}`);
    }
  };
  return {
    cert: read(files.certFile, 'certificate'),
    key: new Secret(read(files.keyFile, 'private key')),
    clientCa: files.clientCaFile ? read(files.clientCaFile, 'client CA') : undefined,
  };
}

/**
 * Settings from file names (config file values overlaid by environment variables, already
 * merged by the caller). `what` names the section in messages ("tls", "xks.tls").
 */
export function resolveTls(
  given: { certFile?: string | undefined; keyFile?: string | undefined; clientCaFile?: string | undefined; clientSubjectNames?: string[] | undefined; watchIntervalMs?: number | undefined },
  what: string,
  cwd: string,
  fail: (message: string) => never,
): TlsSettings {
  if (!given.certFile || !given.keyFile) fail(`${what}.certFile and ${what}.keyFile are both required`);
  if (given.clientSubjectNames && !given.clientCaFile) fail(`${what}.clientSubjectNames needs ${what}.clientCaFile`);
  const files: TlsFiles = {
    certFile: resolve(cwd, given.certFile as string),
    keyFile: resolve(cwd, given.keyFile as string),
    clientCaFile: given.clientCaFile ? resolve(cwd, given.clientCaFile) : undefined,
  };
  let pem;
  try {
    pem = readTlsFiles(files, what);
  } catch (e) {
    return fail((e as Error).message);
  }
  return {
    ...pem,
    clientSubjectNames: given.clientSubjectNames,
    files,
    watchIntervalMs: given.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS,
  };
}

/** "a, b,c" → ['a', 'b', 'c']; undefined or empty → undefined. */
export const listFromEnv = (v: string | undefined): string[] | undefined => {
  const list = v?.split(',').map((s) => s.trim()).filter(Boolean);
  return list && list.length > 0 ? list : undefined;
};
