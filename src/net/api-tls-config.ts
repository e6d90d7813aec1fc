import { z } from 'zod';
import { isLoopbackHost, listFromEnv, resolveTls, tlsFileFields, type TlsSettings } from './tls-settings.js';

/**
 * TLS of the AWS API listener (the `tls` section and P11KMS_TLS_* variables; README, "TLS"),
 * and the rule that plain HTTP stays on loopback unless the operator says a TLS-terminating
 * proxy sits in front (`plainHttpBehindTlsProxy`, logged at start-up).
 */

const PRINCIPAL_ARN = /^arn:aws:(iam|sts)::\d{12}:(root|user\/.+|role\/.+|assumed-role\/.+)$/;

/** Certificate subject CN → the SigV4 principal ARNs that may sign requests on its connections. */
const ClientPrincipals = z.record(z.string().min(1), z.array(z.string().regex(PRINCIPAL_ARN, 'must be an IAM principal ARN')).min(1));

export const apiTlsFileSchema = z
  .object({ ...tlsFileFields, clientPrincipals: ClientPrincipals.optional() })
  .strict()
  .optional();

export interface ApiTlsConfig extends TlsSettings {
  /** When set, each request's SigV4 principal must be listed for its client certificate's CN. */
  clientPrincipals?: Record<string, string[]> | undefined;
}

export interface ApiListenerSecurity {
  tls?: ApiTlsConfig | undefined;
  /** Plain HTTP on a non-loopback address, accepted because a TLS proxy terminates in front. */
  plainHttpBehindTlsProxy: boolean;
}

interface Inputs {
  host: string;
  file: z.output<typeof apiTlsFileSchema>;
  fileOverride: boolean | undefined;
  env: NodeJS.ProcessEnv;
  cwd: string;
  flag(name: string): boolean | undefined;
  fail(message: string): never;
}

export function resolveApiListenerSecurity({ host, file, fileOverride, env, cwd, flag, fail }: Inputs): ApiListenerSecurity {
  const given = {
    certFile: env.P11KMS_TLS_CERT || file?.certFile,
    keyFile: env.P11KMS_TLS_KEY || file?.keyFile,
    clientCaFile: env.P11KMS_TLS_CLIENT_CA || file?.clientCaFile,
    clientSubjectNames: listFromEnv(env.P11KMS_TLS_CLIENT_SUBJECT) ?? file?.clientSubjectNames,
    watchIntervalMs: intOrUndefined(env.P11KMS_TLS_WATCH_INTERVAL_MS, 'P11KMS_TLS_WATCH_INTERVAL_MS', fail) ?? file?.watchIntervalMs,
  };
  const plainHttpBehindTlsProxy = flag('P11KMS_PLAIN_HTTP_BEHIND_TLS_PROXY') ?? fileOverride ?? false;
  let clientPrincipals = file?.clientPrincipals;
  if (env.P11KMS_TLS_CLIENT_PRINCIPALS) {
    let json: unknown;
    try {
      json = JSON.parse(env.P11KMS_TLS_CLIENT_PRINCIPALS);
    } catch {
      fail('P11KMS_TLS_CLIENT_PRINCIPALS must be a JSON object: {"<certificate CN>": ["<principal ARN>", ...]}');
    }
    const parsed = ClientPrincipals.safeParse(json);
    if (!parsed.success) fail(`P11KMS_TLS_CLIENT_PRINCIPALS: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    clientPrincipals = parsed.data;
  }
  if (!given.certFile && !given.keyFile) {
    if (given.clientCaFile || clientPrincipals) fail('tls.clientCaFile and tls.clientPrincipals need tls.certFile and tls.keyFile');
    if (!isLoopbackHost(host) && !plainHttpBehindTlsProxy) {
      fail(
        `host '${host}' is not a loopback address, and without TLS the AWS API would carry plaintexts, data keys and ` +
          'private keys in clear. Set tls.certFile and tls.keyFile (P11KMS_TLS_CERT, P11KMS_TLS_KEY), or, only when a ' +
          'TLS-terminating proxy on this host is the sole client, plainHttpBehindTlsProxy (P11KMS_PLAIN_HTTP_BEHIND_TLS_PROXY=true)',
      );
    }
    return { plainHttpBehindTlsProxy };
  }
  const tls = resolveTls(given, 'tls', cwd, fail);
  if (clientPrincipals && !tls.clientCa) fail('tls.clientPrincipals needs tls.clientCaFile (mutual TLS)');
  // A certificate whose CN maps to no principal could make no request: refuse it at the handshake.
  const clientSubjectNames = tls.clientSubjectNames ?? (clientPrincipals && Object.keys(clientPrincipals));
  return { tls: { ...tls, clientSubjectNames, clientPrincipals }, plainHttpBehindTlsProxy };
}

function intOrUndefined(v: string | undefined, name: string, fail: (m: string) => never): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) fail(`${name} must be a whole number`);
  return Number(v);
}
