import { parseArgs } from 'node:util';
import type { CliIo } from './credentials.js';

/**
 * Exit codes, the same for every subcommand (README "Operator command line"):
 *   0  done / healthy / verified
 *   1  the check found a problem (daemon not ready, audit trail tampered, token cannot be opened)
 *   2  usage or configuration error
 *   3  the daemon cannot be reached over its admin socket
 */
export const EXIT = { ok: 0, problem: 1, usage: 2, unreachable: 3 } as const;

export const stdio: CliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** Parses a subcommand's options; on a mistake prints the message and its usage and returns undefined. */
export function parseOrUsage<O extends NonNullable<Parameters<typeof parseArgs>[0]>['options']>(
  argv: string[],
  options: O,
  usageText: string,
  io: CliIo,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (e) {
    io.err(`${(e as Error).message}\n\n${usageText}`);
    return undefined;
  }
}
