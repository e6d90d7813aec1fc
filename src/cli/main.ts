import { parseArgs } from 'node:util';
import { EXIT } from './common.js';
import type { CliIo } from './credentials.js';

export { stdio } from './common.js';

/** The `p11kms` command: one bin, a subcommand per job, `--help` on each, one set of exit codes (common.ts). */
const HELP = `p11kms: AWS KMS semantics on a PKCS#11 token

Usage: p11kms <command> [options]      (p11kms <command> --help for each)

Commands:
  serve                 run the daemon in the foreground (what ./scripts/start runs)
  status                health, token, session pool, custom key stores and audit state of the
                        running daemon, over its admin socket
  credentials ...       access keys and identity policies of the running daemon
  audit verify          verify the audit trail (hash chain, seals in the token, truncation)
  keys unused --days N  keys with no cryptographic use for N days (GetKeyLastUsage's records)
  config check          validate the configuration and open the module, token and PIN
                        without serving
  peer-key ...          Multi-Region peering: the receiving key of this site's token, and the
                        security officer's trust step (docs/multi-region.md)

Configuration comes from the environment and P11KMS_CONFIG, as for serve; with nothing set,
./var (the data directory of ./scripts/start) and its development token are used.

Exit codes: 0 ok, 1 a problem was found, 2 usage or configuration error, 3 daemon unreachable.
`;

export async function runCli(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number | 'serving'> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      if (rest.includes('--help') || rest.includes('-h')) {
        io.out('Usage: p11kms serve\n\nRuns the daemon in the foreground until SIGTERM or SIGINT. Configuration: README "Configuration".\n' +
          'Exit codes: 0 stopped by a signal, 1 cannot start (token, store, listeners), 2 configuration error.\n');
        return EXIT.ok;
      }
      if (rest.length) return usage(io, `serve takes no arguments (configuration comes from the environment and P11KMS_CONFIG).`);
      const { serve } = await import('../main.js');
      await serve();
      return 'serving';
    }
    case 'status':
      return (await import('./status.js')).statusCli(rest, env, io);
    case 'credentials':
      return (await import('./credentials.js')).runCredentialsCli(rest, env, io);
    case 'audit':
      return (await import('./audit.js')).auditCli(rest, env, io);
    case 'keys':
      return (await import('./keys.js')).keysCli(rest, env, io);
    case 'config':
      return (await import('./config-check.js')).configCli(rest, env, io);
    case 'peer-key':
      return (await import('./peer-keys.js')).runPeerKeyCli(rest, env, io);
    case undefined:
    case 'help':
      io.out(HELP);
      return EXIT.ok;
    default: {
      const { values } = parseArgs({ args: argv, strict: false, options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } } });
      if (values.help) {
        io.out(HELP);
        return EXIT.ok;
      }
      return usage(io, `unknown command '${command}'.`);
    }
  }
}

function usage(io: CliIo, message: string): number {
  io.err(`p11kms: ${message}\n\n${HELP}`);
  return EXIT.usage;
}
