import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { closeModules } from '../hsm/module.js';
import { Token } from '../hsm/token.js';
import { probeToken } from '../hsm/token-probe.js';
import { silentLogger } from '../log.js';
import { EXIT, parseOrUsage } from './common.js';
import type { CliIo } from './credentials.js';

const USAGE = `Usage: p11kms config check [--config FILE]

Validates the configuration (FILE, else P11KMS_CONFIG, with the environment's overrides, as
serve reads it), then loads the PKCS#11 module, finds the token by its label and logs in with
the configured PIN, without serving anything: the first thing to run on a new HSM. The named
HSMs of custom key stores are probed for their token (their PINs are key store passwords,
given through the API, so no login). Nothing secret is printed.

Exit codes: 0 valid and the token opens, 1 the module, token or PIN failed, 2 invalid
configuration or usage.
`;

export async function configCli(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h' || (command === 'check' && (rest.includes('--help') || rest.includes('-h')))) {
    io.out(USAGE);
    return EXIT.ok;
  }
  if (command !== 'check') {
    io.err(`p11kms config: ${command ? `unknown command '${command}'` : 'missing command'}.\n\n${USAGE}`);
    return EXIT.usage;
  }
  const parsed = parseOrUsage(rest, { config: { type: 'string' } }, USAGE, io);
  if (!parsed) return EXIT.usage;
  const file = parsed.values.config as string | undefined;
  let config: Config;
  try {
    config = loadConfig(file ? { ...env, P11KMS_CONFIG: resolve(file) } : env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.err(`p11kms config check: ${e.message}\n`);
    return EXIT.usage;
  }
  const source = file ?? env.P11KMS_CONFIG;
  io.out(`configuration: ${source ? `${source} is valid` : 'no file (defaults and environment)'}\n`);
  io.out(`data directory: ${config.dataDir}${existsSync(config.dataDir) ? '' : ' (does not exist yet; serve creates it)'}\n`);
  for (const s of config.sidecars) {
    const dir = dirname(s.path);
    io.out(`sidecar socket: ${s.path} mode ${s.mode.toString(8).padStart(4, '0')} for ${s.principal.arn}${existsSync(dir) ? '' : ` (directory ${dir} does not exist)`}\n`);
  }
  let failed = false;
  let token: Token | undefined;
  try {
    token = Token.open({ ...config.hsm, maxSessions: 1, workerThreads: 0 }, silentLogger);
    io.out(`token: '${config.hsm.tokenLabel}' on ${config.hsm.module}: found, logged in with the configured PIN\n`);
  } catch (e) {
    failed = true;
    io.err(`token: '${config.hsm.tokenLabel}' on ${config.hsm.module}: ${(e as Error).message}\n`);
  } finally {
    token?.close();
  }
  for (const [name, hsm] of Object.entries(config.hsms)) {
    const probe = await probeToken(hsm.module, hsm.tokenLabel, hsm.moduleEnv);
    if (probe.present) io.out(`hsm ${name}: token '${hsm.tokenLabel}' on ${hsm.module}: present\n`);
    else {
      failed = true;
      io.err(`hsm ${name}: token '${hsm.tokenLabel}' on ${hsm.module}: ${probe.reason}\n`);
    }
  }
  closeModules();
  io.out(failed ? 'FAILED\n' : 'OK\n');
  return failed ? EXIT.problem : EXIT.ok;
}
