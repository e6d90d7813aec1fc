import { ConfigError, loadConfig } from './config.js';
import { superviseWorkers, workerConfig } from './cluster/workers.js';
import { startDaemon } from './daemon.js';
import { isKmsError } from './errors.js';
import { createLogger } from './log.js';

async function main(): Promise<void> {
  if (process.argv[2] === 'credentials') {
    const { runCredentialsCli } = await import('./cli/credentials.js');
    const io = { out: (s: string) => process.stdout.write(s), err: (s: string) => process.stderr.write(s) };
    process.exitCode = await runCredentialsCli(process.argv.slice(3), process.env, io);
    return;
  }
  if (process.argv[2] === 'peer-key') {
    const { runPeerKeyCli } = await import('./cli/peer-keys.js');
    const io = { out: (s: string) => process.stdout.write(s), err: (s: string) => process.stderr.write(s) };
    process.exitCode = runPeerKeyCli(process.argv.slice(3), process.env, io);
    return;
  }
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`p11kms: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const log = createLogger(config.logLevel);
  // Several worker processes on this host (database.workers): the supervisor only forks them.
  if (superviseWorkers(config, log)) return;
  config = workerConfig(config);
  let daemon;
  try {
    daemon = await startDaemon(config, log);
  } catch (e) {
    log.fatal({ err: isKmsError(e) ? e.message : (e as Error).message }, 'cannot start');
    process.exit(1);
  }
  const shutdown = (signal: string) => {
    log.info({ signal }, 'signal received');
    daemon.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: (e as Error).message }, 'unclean shutdown');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  // Certificates renewed on disk are served to new connections; open connections carry on.
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reloading TLS certificates');
    daemon.reloadTls();
  });
  // A fault in one request must not take the daemon down; log it and keep serving.
  process.on('unhandledRejection', (e) => log.error({ err: (e as Error)?.message }, 'unhandled rejection'));
}

void main();
