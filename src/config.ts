import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { resolveXksConfig, xksFileSchema, type XksConfig } from './api/xks/config.js';
import { resolveSidecars, SidecarsSchema, type Sidecar } from './api/rest/config.js';
import { CapabilitiesSchema } from './hsm/profile.js';
import { apiTlsFileSchema, resolveApiListenerSecurity, type ApiListenerSecurity } from './net/api-tls-config.js';
import { Secret } from './secret.js';

/**
 * Configuration: an optional JSON file (P11KMS_CONFIG) validated with zod, then environment
 * overrides, with defaults that run as-is in development (see README, "Configuration").
 */

const SecretSource = z.union([
  z.object({ env: z.string().min(1) }).strict(),
  z.object({ file: z.string().min(1) }).strict(),
]);

const HsmSchema = z
  .object({
    $comment: z.string().optional(),
    module: z.string().min(1).default('/usr/lib/softhsm/libsofthsm2.so'),
    tokenLabel: z.string().min(1).max(32).default('p11kms-dev'),
    pin: SecretSource.optional(),
    maxSessions: z.number().int().min(1).max(1024).default(8),
    sessionWaitMs: z.number().int().min(1).max(60_000).default(2000),
    maxWaiters: z.number().int().min(0).max(100_000).default(1024),
    /** Worker threads that run AES-GCM token calls off the event loop (0: event loop + libuv pool). Default max(2, CPUs). */
    workerThreads: z.number().int().min(0).max(256).optional(),
    /** A per-request token call (not key generation) without an answer after this long fails with 503 DependencyTimeoutException (0: no limit). */
    callTimeoutMs: z.number().int().min(0).max(600_000).default(10_000),
    moduleEnv: z.record(z.string(), z.string()).default({}),
    /** C_Initialize's pReserved string, for modules that take init arguments (NSS softoken: configdir=…). */
    libraryParameters: z.string().min(1).optional(),
    /** The module's capability profile (src/hsm/profile.ts; native-config/README.md). */
    capabilities: CapabilitiesSchema.prefault({}),
  })
  .strict();

/** Audit trail (issue 7): see README, "Audit trail". */
const AuditSchema = z
  .object({
    enabled: z.boolean().default(true),
    dir: z.string().min(1).optional(),
    /** 'fsync': every event is on disk (fdatasync) before the response; 'write': handed to the OS before the response, fdatasync every fsyncIntervalMs. */
    durability: z.enum(['fsync', 'write']).default('fsync'),
    fsyncIntervalMs: z.number().int().min(10).max(60_000).default(1000),
    /** When the trail cannot be written, refuse operations (5xx) instead of serving them unaudited. */
    failClosed: z.boolean().default(true),
    maxFileBytes: z.number().int().min(4096).default(64 * 1024 * 1024),
    rotateIntervalMs: z.number().int().min(1000).default(24 * 3600 * 1000),
    sealEveryEvents: z.number().int().min(1).default(10_000),
    sealIntervalMs: z.number().int().min(100).default(5000),
  })
  .strict();

const MetricsSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** When set, /metrics needs `Authorization: Bearer <token>`; otherwise it answers only on loopback and the Unix socket. */
    bearerToken: SecretSource.optional(),
  })
  .strict();
/**
 * A named HSM a custom key store can be connected to (CreateCustomKeyStore's CloudHsmClusterId).
 * The same shape as `hsm`, except that the PIN is not configured: it is the key store's
 * KeyStorePassword, given through the API and kept sealed in the metadata store. The name
 * follows AWS's CloudHsmClusterId pattern, because the AWS CLI and SDKs check its length.
 */
export const HSM_NAME = /^cluster-[2-7a-zA-Z]{11,16}$/;
const NamedHsmSchema = HsmSchema.omit({ pin: true, tokenLabel: true })
  .extend({
    tokenLabel: z.string().min(1).max(32),
    /** PEM file of the HSM's trust anchor; when set, CreateCustomKeyStore's TrustAnchorCertificate must match it. */
    trustAnchorCertificate: z.object({ file: z.string().min(1) }).strict().optional(),
  })
  .strict();
/** Names are checked in loadHsms (zod reports a bad record key only as "Invalid key in record"). */
const HsmsSchema = z.record(z.string(), NamedHsmSchema);

const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
/**
 * Further regions this deployment serves (issue 13). A region without `hsm` keeps its keys in
 * the main token; with `hsm` (any field of the main `hsm`, tokenLabel required) in its own token.
 */
const RegionSchema = z
  .object({
    $comment: z.string().optional(),
    hsm: HsmSchema.partial().extend({ tokenLabel: z.string().min(1).max(32) }).strict().optional(),
  })
  .strict();

/**
 * Regions served by peer deployments (issue 13, two sites): where each peer listens and the
 * SigV4 credentials it issued to this deployment. `peerPrincipals` are the principals (of
 * credentials this deployment issued to its peers) allowed to call the peer operations.
 */
const PeerSchema = z
  .object({
    endpoint: z.string().url(),
    accessKeyId: z.string().min(16).max(128),
    secretAccessKey: SecretSource,
  })
  .strict();
const PeersSchema = z.record(z.string().regex(REGION), PeerSchema);

const FileSchema = z
  .object({
    $comment: z.string().optional(),
    dataDir: z.string().min(1).optional(),
    host: z.string().min(1).optional(),
    port: z.number().int().min(0).max(65535).optional(),
    socketPath: z.string().min(1).optional(),
    /** HTTPS on the AWS API listener (src/net/api-tls-config.ts). */
    tls: apiTlsFileSchema,
    plainHttpBehindTlsProxy: z.boolean().optional(),
    accountId: z.string().regex(/^\d{12}$/).optional(),
    region: z.string().regex(REGION).optional(),
    regions: z.record(z.string().regex(REGION), RegionSchema).default({}),
    peers: PeersSchema.default({}),
    peerPrincipals: z.array(z.string().min(1)).default([]),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
    schedulerIntervalMs: z.number().int().min(10).max(3_600_000).optional(),
    hsm: HsmSchema.prefault({}),
    hsms: HsmsSchema.default({}),
    admin: z
      .object({ accessKeyId: z.string().min(16).max(128).optional(), secretAccessKey: SecretSource.optional() })
      .strict()
      .prefault({}),
    xks: xksFileSchema(SecretSource).optional(),
    audit: AuditSchema.prefault({}),
    metrics: MetricsSchema.prefault({}),
    /** High availability (README): several daemons on one PostgreSQL database. */
    database: z
      .object({
        url: SecretSource.optional(),
        nodeId: z.string().regex(/^[\w.-]{1,64}$/).optional(),
        queryTimeoutMs: z.number().int().min(100).max(60_000).default(3000),
        /** Worker processes on this host behind one port (node:cluster); each is a node of its own. */
        workers: z.number().int().min(1).max(256).default(1),
      })
      .strict()
      .optional(),
    sidecars: SidecarsSchema,
    rest: z
      .object({
        /** The REST routes on the TCP listener: 'sigv4' (signed as the AWS API is) or 'off'. */
        tcp: z.enum(['sigv4', 'off']).default('sigv4'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export interface Config {
  dataDir: string;
  host: string;
  port: number;
  /** TLS of the AWS API listener, and the documented plain-HTTP override. */
  listener: ApiListenerSecurity;
  socketPath: string;
  accountId: string;
  region: string;
  /** Every region served, the default (`region`) first; each with its token's configuration. */
  regions: RegionConfig[];
  /** Regions served by peer deployments, with the credentials each peer issued to this one. */
  peers: Record<string, { endpoint: string; accessKeyId: string; secretAccessKey: Secret }>;
  /** Principal ARNs allowed to call the peer operations (the credentials this deployment issued to its peers). */
  peerPrincipals: string[];
  logLevel: string;
  /** How often the key-lifecycle scheduler looks for due rotations, deletions and expiries. */
  schedulerIntervalMs: number;
  hsm: Omit<z.output<typeof HsmSchema>, 'pin' | '$comment'> & { pin: Secret };
  /** Named HSMs for custom key stores (see NamedHsmSchema), by name. */
  hsms: Record<string, NamedHsm>;
  admin: { accessKeyId: string; secretAccessKey: Secret };
  /** The XKS proxy listener (src/api/xks), when enabled. */
  xks?: XksConfig | undefined;
  audit: Omit<z.output<typeof AuditSchema>, 'dir'> & { dir: string };
  metrics: { enabled: boolean; bearerToken?: Secret | undefined };
  /** PostgreSQL metadata store shared by several daemons; absent: SQLite in dataDir. */
  database?: { url: Secret; nodeId: string; queryTimeoutMs: number; workers: number } | undefined;
  /** REST sidecar sockets (src/api/rest): each speaks for one principal. */
  sidecars: Sidecar[];
  rest: { tcp: 'sigv4' | 'off' };
}

/** AWS's documented example credentials: obviously not for production, fine for a dev box. */
export const DEV_ADMIN_ACCESS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE';
export const DEV_ADMIN_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

export class ConfigError extends Error {}

export interface RegionConfig {
  name: string;
  /** The token of this region: the main `hsm` itself when the region has no token of its own. */
  hsm: Config['hsm'];
  /** Whether `hsm` is the main token (regions sharing it also share its token objects). */
  mainToken: boolean;
}

/** The default region, then P11KMS_REGIONS (comma-separated) and the file's `regions`. */
function loadRegions(
  defaultRegion: string,
  fileRegions: z.output<typeof FileSchema>['regions'],
  env: NodeJS.ProcessEnv,
  mainHsm: Config['hsm'],
  dataDir: string,
): RegionConfig[] {
  const names = [defaultRegion];
  const add = (name: string, where: string) => {
    if (!REGION.test(name)) throw new ConfigError(`${where}: '${name}' is not a region name (e.g. eu-west-1)`);
    if (!names.includes(name)) names.push(name);
  };
  for (const name of (env.P11KMS_REGIONS ?? '').split(',').map((r) => r.trim()).filter(Boolean)) add(name, 'P11KMS_REGIONS');
  for (const name of Object.keys(fileRegions)) add(name, 'regions');
  const seen = new Map<string, string>([[`${mainHsm.module}\u0000${mainHsm.tokenLabel}`, defaultRegion]]);
  return names.map((name) => {
    const own = fileRegions[name]?.hsm;
    if (!own || (own.tokenLabel === mainHsm.tokenLabel && (own.module ?? mainHsm.module) === mainHsm.module)) {
      return { name, hsm: mainHsm, mainToken: true };
    }
    const { pin: pinSource, $comment: _, ...rest } = own;
    const hsm = { ...mainHsm, ...rest, capabilities: { ...mainHsm.capabilities, ...rest.capabilities } };
    const where = `${hsm.module}\u0000${hsm.tokenLabel}`;
    const other = seen.get(where);
    if (other) throw new ConfigError(`regions.${name}.hsm names the token of region ${other}; give it no hsm to share the main token`);
    seen.set(where, name);
    const pin = readSecret(pinSource ?? { file: join(dataDir, 'regions', name, 'user.pin') }, `Token PIN of region ${name}`, env);
    return { name, hsm: { ...hsm, pin }, mainToken: false };
  });
}

export type NamedHsm = Omit<z.output<typeof NamedHsmSchema>, '$comment' | 'trustAnchorCertificate'> & {
  /** PEM text of the trust anchor, when configured. */
  trustAnchorCertificate?: string | undefined;
};

/** An environment variable holding JSON of `schema`'s shape, checked (undefined when unset). */
function jsonFromEnv<S extends z.ZodType>(env: NodeJS.ProcessEnv, name: string, schema: S): z.output<S> | undefined {
  const text = env[name];
  if (!text) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${name} is not valid JSON: ${(e as Error).message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new ConfigError(`Invalid ${name}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** `hsms` from the file, overlaid by P11KMS_HSMS (a JSON object of the same shape), checked. */
function loadHsms(fileHsms: z.output<typeof HsmsSchema>, env: NodeJS.ProcessEnv, defaultHsm: { module: string; tokenLabel: string }) {
  const merged = { ...fileHsms, ...jsonFromEnv(env, 'P11KMS_HSMS', HsmsSchema) };
  const out: Record<string, NamedHsm> = {};
  const seen = new Map<string, string>();
  seen.set(`${defaultHsm.module}\u0000${defaultHsm.tokenLabel}`, 'hsm');
  for (const [name, h] of Object.entries(merged)) {
    if (!HSM_NAME.test(name)) {
      throw new ConfigError(
        `hsms: '${name}' is not a valid HSM name; names follow the CloudHsmClusterId pattern cluster-[2-7a-zA-Z]{11,16} (the AWS CLI refuses shorter ids)`,
      );
    }
    const { $comment: _, trustAnchorCertificate, ...rest } = h;
    const where = `${rest.module}\u0000${rest.tokenLabel}`;
    const other = seen.get(where);
    if (other) {
      throw new ConfigError(`hsms.${name} names the same token as ${other} (module ${rest.module}, label '${rest.tokenLabel}'); each HSM needs its own token`);
    }
    seen.set(where, `hsms.${name}`);
    let pem: string | undefined;
    if (trustAnchorCertificate) {
      try {
        pem = readFileSync(trustAnchorCertificate.file, 'utf8');
      } catch {
        throw new ConfigError(`hsms.${name}.trustAnchorCertificate: cannot read ${trustAnchorCertificate.file}`);
      }
    }
    out[name] = { ...rest, trustAnchorCertificate: pem };
  }
  return out;
}

/** `peers` and `peerPrincipals` from the file, overlaid by P11KMS_PEERS (JSON) and P11KMS_PEER_PRINCIPALS (comma-separated). */
function loadPeers(filePeers: z.output<typeof PeersSchema>, filePrincipals: string[], env: NodeJS.ProcessEnv) {
  const peers = { ...filePeers, ...jsonFromEnv(env, 'P11KMS_PEERS', PeersSchema) };
  const out: Config['peers'] = {};
  for (const [region, p] of Object.entries(peers)) {
    out[region] = { endpoint: p.endpoint, accessKeyId: p.accessKeyId, secretAccessKey: readSecret(p.secretAccessKey, `peers.${region}.secretAccessKey`, env) };
  }
  const fromEnv = (env.P11KMS_PEER_PRINCIPALS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return { peers: out, peerPrincipals: [...new Set([...filePrincipals, ...fromEnv])] };
}

function readSecret(source: z.infer<typeof SecretSource>, what: string, env: NodeJS.ProcessEnv): Secret {
  if ('env' in source) {
    const v = env[source.env];
    if (!v) throw new ConfigError(`${what}: environment variable ${source.env} is not set`);
    return new Secret(v);
  }
  try {
    return new Secret(readFileSync(source.file, 'utf8').replace(/\r?\n$/, ''));
  } catch {
    throw new ConfigError(`${what}: cannot read ${source.file}`);
  }
}

function intFromEnv(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new ConfigError(`${name} must be a whole number`);
  return Number(v);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  let fileJson: unknown = {};
  const path = env.P11KMS_CONFIG;
  if (path) {
    try {
      fileJson = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new ConfigError(`Cannot read config file ${path}: ${(e as Error).message}`);
    }
  }
  const parsed = FileSchema.safeParse(fileJson);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ConfigError(`Invalid configuration${path ? ` in ${path}` : ''}: ${detail}`);
  }
  const f = parsed.data;
  const dataDir = resolve(cwd, env.P11KMS_DATA_DIR || f.dataDir || './var');
  const { pin: pinSource, $comment: _, ...hsm } = f.hsm;
  hsm.module = env.P11KMS_PKCS11_MODULE || hsm.module;
  hsm.tokenLabel = env.P11KMS_TOKEN_LABEL || hsm.tokenLabel;
  hsm.maxSessions = intFromEnv(env, 'P11KMS_MAX_SESSIONS') ?? hsm.maxSessions;
  hsm.workerThreads = intFromEnv(env, 'P11KMS_TOKEN_WORKER_THREADS') ?? hsm.workerThreads;
  hsm.callTimeoutMs = intFromEnv(env, 'P11KMS_TOKEN_CALL_TIMEOUT_MS') ?? hsm.callTimeoutMs;
  // Configured by environment alone (./scripts/start, the benchmark), the module is a profile-less
  // one: this says it is an in-process software token (SoftHSM2), as its profile file would.
  const softwareToken = boolFromEnv(env, 'P11KMS_SOFTWARE_TOKEN');
  if (softwareToken !== undefined) hsm.capabilities = { ...hsm.capabilities, softwareToken };
  // Likewise for SoftHSM2's per-process object list, when several daemons share its token directory.
  const objectList = env.P11KMS_OBJECT_LIST;
  if (objectList === 'live' || objectList === 'per-process') hsm.capabilities = { ...hsm.capabilities, objectList };
  else if (objectList) throw new ConfigError(`P11KMS_OBJECT_LIST must be 'live' or 'per-process', not '${objectList}'`);
  // The development token of ./scripts/start: its SoftHSM2 configuration is found in the data
  // directory, so `p11kms status|audit verify|config check` need no SOFTHSM2_CONF of their own.
  const devSoftHsmConf = join(dataDir, 'softhsm', 'softhsm2.conf');
  if (!env.SOFTHSM2_CONF && !hsm.moduleEnv.SOFTHSM2_CONF && existsSync(devSoftHsmConf)) {
    hsm.moduleEnv = { ...hsm.moduleEnv, SOFTHSM2_CONF: devSoftHsmConf };
  }
  const pin = env.P11KMS_PIN
    ? new Secret(env.P11KMS_PIN)
    : readSecret(
        env.P11KMS_PIN_FILE ? { file: env.P11KMS_PIN_FILE } : (pinSource ?? { file: join(dataDir, 'softhsm', 'user.pin') }),
        'Token PIN',
        env,
      );
  const secretAccessKey = env.P11KMS_ADMIN_SECRET_ACCESS_KEY
    ? new Secret(env.P11KMS_ADMIN_SECRET_ACCESS_KEY)
    : f.admin.secretAccessKey
      ? readSecret(f.admin.secretAccessKey, 'Admin secret access key', env)
      : new Secret(DEV_ADMIN_SECRET_ACCESS_KEY);
  const accountId = env.P11KMS_ACCOUNT_ID || f.accountId || '111122223333';
  const socketPath = env.P11KMS_SOCKET || f.socketPath || join(dataDir, 'p11kms.sock');
  const auditDir = env.P11KMS_AUDIT_DIR || f.audit.dir || join(dataDir, 'audit');
  const durability = env.P11KMS_AUDIT_DURABILITY || f.audit.durability;
  if (durability !== 'fsync' && durability !== 'write') throw new ConfigError('P11KMS_AUDIT_DURABILITY must be fsync or write');
  const metricsToken = env.P11KMS_METRICS_BEARER_TOKEN
    ? new Secret(env.P11KMS_METRICS_BEARER_TOKEN)
    : f.metrics.bearerToken && readSecret(f.metrics.bearerToken, 'Metrics bearer token', env);
  const region = env.P11KMS_REGION || f.region || 'us-east-1';
  const mainHsm = { ...hsm, pin };
  const host = env.P11KMS_HOST || f.host || '127.0.0.1';
  const listener = resolveApiListenerSecurity({
    host, file: f.tls, fileOverride: f.plainHttpBehindTlsProxy, env, cwd,
    flag: (name) => boolFromEnv(env, name),
    fail: (message) => {
      throw new ConfigError(message);
    },
  });
  return {
    dataDir,
    host,
    listener,
    port: intFromEnv(env, 'P11KMS_PORT') ?? f.port ?? 4599,
    socketPath: isAbsolute(socketPath) ? socketPath : resolve(cwd, socketPath),
    accountId,
    region,
    regions: loadRegions(region, f.regions, env, mainHsm, dataDir),
    ...loadPeers(f.peers, f.peerPrincipals, env),
    logLevel: env.P11KMS_LOG_LEVEL || f.logLevel || 'info',
    schedulerIntervalMs: intFromEnv(env, 'P11KMS_SCHEDULER_INTERVAL_MS') ?? f.schedulerIntervalMs ?? 60_000,
    hsm: mainHsm,
    hsms: loadHsms(f.hsms, env, hsm),
    admin: {
      accessKeyId: env.P11KMS_ADMIN_ACCESS_KEY_ID || f.admin.accessKeyId || DEV_ADMIN_ACCESS_KEY_ID,
      secretAccessKey,
    },
    xks: resolveXksConfig(f.xks, {
      env,
      cwd,
      readSecret: (source, what) => readSecret(source, what, env),
      fail: (message) => {
        throw new ConfigError(message);
      },
    }),
    audit: {
      ...f.audit,
      enabled: boolFromEnv(env, 'P11KMS_AUDIT') ?? f.audit.enabled,
      dir: isAbsolute(auditDir) ? auditDir : resolve(cwd, auditDir),
      durability,
      failClosed: boolFromEnv(env, 'P11KMS_AUDIT_FAIL_CLOSED') ?? f.audit.failClosed,
    },
    metrics: { enabled: boolFromEnv(env, 'P11KMS_METRICS') ?? f.metrics.enabled, bearerToken: metricsToken },
    database: databaseConfig(f.database, env),
    sidecars: resolveSidecars(f.sidecars, { env, cwd, accountId, fail }),
    rest: { tcp: f.rest.tcp },
  };
}

/** P11KMS_DATABASE_URL (postgres://…) or database.url selects PostgreSQL; the URL may hold a password, so it is a Secret. */
function databaseConfig(d: z.output<typeof FileSchema>['database'], env: NodeJS.ProcessEnv): Config['database'] {
  const url = env.P11KMS_DATABASE_URL ? new Secret(env.P11KMS_DATABASE_URL) : d?.url && readSecret(d.url, 'Database URL', env);
  if (!url) {
    if (env.P11KMS_WORKERS && env.P11KMS_WORKERS !== '1') throw new ConfigError('P11KMS_WORKERS needs the PostgreSQL store (P11KMS_DATABASE_URL): SQLite has one writer');
    return undefined;
  }
  if (!/^postgres(ql)?:\/\//.test(url.reveal())) throw new ConfigError('The database URL must start with postgres:// or postgresql://');
  const nodeId = env.P11KMS_NODE_ID || d?.nodeId || hostname().replace(/[^\w.-]/g, '_').slice(0, 64);
  if (!/^[\w.-]{1,64}$/.test(nodeId)) throw new ConfigError('P11KMS_NODE_ID must be 1 to 64 letters, digits, dots, dashes or underscores');
  const workers = intFromEnv(env, 'P11KMS_WORKERS') ?? d?.workers ?? 1;
  if (workers < 1 || workers > 256) throw new ConfigError('P11KMS_WORKERS must be 1 to 256');
  return { url, nodeId, queryTimeoutMs: d?.queryTimeoutMs ?? 3000, workers };
}

const fail = (message: string): never => {
  throw new ConfigError(message);
};

function boolFromEnv(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new ConfigError(`${name} must be true or false`);
}
