import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SOFTHSM_MODULE } from './softhsm.js';

const ROOT = resolve(import.meta.dirname, '../..');
export const EMULATOR_VENDORS = ['cloudhsm', 'luna', 'nshield', 'yubihsm2', 'kmsp11'] as const;
export type EmulatorVendor = (typeof EMULATOR_VENDORS)[number];

let built: string | undefined;
/** The emulator's .so, compiled on first use and cached by source hash (test/emulator/build.sh). */
export function emulatorModule(): string {
  built ??= execFileSync(join(ROOT, 'test/emulator/build.sh'), { encoding: 'utf8' }).trim();
  return built;
}

export type EmulatorOptions = Record<string, string | number>;

export interface Emulator {
  module: string;
  config: string;
  /** Rewrites the configuration (vendor preset + these options); the emulator re-reads it on its next call. */
  set(options: EmulatorOptions): void;
  /** Lines the emulator logged (generated IVs, injected faults, dropped sessions). */
  log(): string[];
}

/**
 * An emulator configuration in `dir`, in front of SoftHSM2, behaving like `vendor` (a preset in
 * test/emulator/vendors) or like plain SoftHSM2. Sets P11EMU_CONFIG for this process: the
 * emulator reads it at C_Initialize, as SoftHSM2 reads SOFTHSM2_CONF.
 */
export function createEmulator(dir: string, vendor?: EmulatorVendor, options: EmulatorOptions = {}): Emulator {
  const config = join(dir, 'p11emu.conf');
  const logFile = join(dir, 'p11emu.log');
  const preset = vendor ? readFileSync(join(ROOT, 'test/emulator/vendors', `${vendor}.conf`), 'utf8') : '';
  let revision = 0;
  const emulator: Emulator = {
    module: emulatorModule(),
    config,
    set(opts) {
      const lines = Object.entries({ ...options, ...opts }).map(([k, v]) => `${k}=${v}`);
      // The revision line makes every rewrite differ in content, not only in mtime.
      writeFileSync(config, `${preset}\nmodule=${SOFTHSM_MODULE}\nlog_file=${logFile}\n${lines.join('\n')}\n# revision ${++revision}\n`);
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean) : []),
  };
  emulator.set({});
  process.env.P11EMU_CONFIG = config;
  return emulator;
}
