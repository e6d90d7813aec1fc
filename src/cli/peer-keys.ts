import { readFileSync, writeFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../config.js';
import { receiveKey, trustPeerKey } from '../hsm/peer-keys.js';
import { Secret } from '../secret.js';

/**
 * `p11kms peer-key …`: the set-up that lets Multi-Region key material move between tokens
 * (src/hsm/peer-keys.ts). Runs in its own process, next to or instead of the daemon, with the
 * daemon's configuration (P11KMS_CONFIG, P11KMS_* variables) choosing the token.
 */
export const USAGE = `Usage: p11kms peer-key <command> [options]

Commands:
  export-receive-key --out FILE [--region R]
      Creates this token's receive key on first use (user PIN from the configuration) and
      writes its public key (PEM) to FILE, for the peer's security officer.
  trust --peer-region R --public-key FILE [--region R] (--so-pin-file FILE | P11KMS_SO_PIN)
      Security officer step: imports the receive key of the token that serves region R as this
      token's trusted wrapping key for R (CKA_TRUSTED). Prints the key's SHA-256 fingerprint.

--region picks the token of one of this deployment's regions (default: the default region).
`;

interface Io {
  out(s: string): void;
  err(s: string): void;
}

function tokenOf(config: Config, region: string | undefined) {
  const r = config.regions.find((x) => x.name === (region ?? config.region));
  if (!r) throw new Error(`This deployment does not serve the region ${region}.`);
  return r.hsm;
}

export function runPeerKeyCli(argv: string[], env: NodeJS.ProcessEnv, io: Io): number {
  const [command, ...rest] = argv;
  try {
    const { values } = parseArgs({
      args: rest,
      options: {
        out: { type: 'string' }, region: { type: 'string' }, 'peer-region': { type: 'string' },
        'public-key': { type: 'string' }, 'so-pin-file': { type: 'string' },
      },
      strict: true,
    });
    const config = loadConfig(env);
    const hsm = tokenOf(config, values.region);
    const access = { module: hsm.module, tokenLabel: hsm.tokenLabel, moduleEnv: hsm.moduleEnv };
    if (command === 'export-receive-key') {
      if (!values.out) throw new Error('--out FILE is required');
      const spki = receiveKey(access, hsm.pin);
      writeFileSync(values.out, createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }));
      io.out(`receive key of token '${hsm.tokenLabel}' written to ${values.out}\n`);
      return 0;
    }
    if (command === 'trust') {
      if (!values['peer-region'] || !values['public-key']) throw new Error('--peer-region and --public-key are required');
      const soPin = values['so-pin-file']
        ? new Secret(readFileSync(values['so-pin-file'], 'utf8').replace(/\r?\n$/, ''))
        : env.P11KMS_SO_PIN ? new Secret(env.P11KMS_SO_PIN) : undefined;
      if (!soPin) throw new Error('the security officer PIN is required (--so-pin-file FILE or P11KMS_SO_PIN)');
      const fingerprint = trustPeerKey(access, soPin, values['peer-region'], readFileSync(values['public-key'], 'utf8'));
      io.out(`token '${hsm.tokenLabel}' now trusts the receive key of ${values['peer-region']} (SHA-256 ${fingerprint})\n`);
      return 0;
    }
    io.err(USAGE);
    return 2;
  } catch (e) {
    io.err(`p11kms peer-key: ${(e as Error).message}\n`);
    return 1;
  }
}
