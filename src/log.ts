import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs. Redaction is a second line of defence: code never passes PINs,
 * secrets, plaintexts or data keys to the logger in the first place.
 */
export function createLogger(level = process.env.P11KMS_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { service: 'p11kms' },
    redact: {
      paths: [
        'pin', '*.pin', 'secret', '*.secret', 'secretAccessKey', '*.secretAccessKey',
        'Plaintext', '*.Plaintext', 'plaintext', '*.plaintext', 'authorization', '*.authorization',
        'headers.authorization', 'KeyStorePassword', '*.KeyStorePassword',
      ],
      censor: '[redacted]',
    },
  });
}

export const silentLogger: Logger = pino({ level: 'silent' });
