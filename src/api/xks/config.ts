import { z } from 'zod';
import type { XksKeyBinding } from '../../model/xks.js';
import { isLoopbackHost, listFromEnv, resolveTls, tlsFileFields, type TlsSettings } from '../../net/tls-settings.js';
import { Secret } from '../../secret.js';

/**
 * Configuration of the XKS proxy listener: the optional `xks` section of the config file, then
 * P11KMS_XKS_* environment overrides (see README, "XKS proxy"). src/config.ts embeds the schema
 * and calls resolveXksConfig(); this file knows nothing else of the daemon's configuration.
 */

/** Spec, Appendix A: 20–30 characters of A–Z and 2–7. */
export const XKS_ACCESS_KEY_ID = /^[A-Z2-7]{20,30}$/;
/** Spec, "XKS proxy configuration in AWS KMS console": 43–64 characters of a–z, A–Z, 0–9, /, + and =. */
export const XKS_SECRET_ACCESS_KEY = /^[A-Za-z0-9/+=]{43,64}$/;
/** Spec: at most 128 characters of A–Z, a–z, 0–9, hyphen, period and underscore. */
export const XKS_EXTERNAL_KEY_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** The part of XksProxyUriPath before /kms/xks/v1 (which may be at most 128 characters in all). */
const URI_PREFIX = /^(\/[A-Za-z0-9_-]+)*$/;
const KEY_REF = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|alias\/[a-zA-Z0-9/_-]{1,250})$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
const USAGES = ['ENCRYPT', 'DECRYPT'] as const;

/** The `xks` section of the config file; `secretSource` is the daemon's `{env}` / `{file}` secret reference. */
export function xksFileSchema<S extends z.ZodType>(secretSource: S) {
  const credential = z
    .object({
      accessKeyId: z.string().regex(XKS_ACCESS_KEY_ID, 'must be 20 to 30 characters of A-Z and 2-7'),
      secretAccessKey: secretSource,
    })
    .strict();
  const key = z
    .object({
      $comment: z.string().optional(),
      keyId: z.string().regex(KEY_REF, 'must be a key id (UUID) or an alias name (alias/...)'),
      externalKeyId: z.string().regex(XKS_EXTERNAL_KEY_ID, 'must be 1 to 128 characters of A-Z a-z 0-9 . _ -').optional(),
      usage: z.array(z.enum(USAGES)).max(2).optional(),
    })
    .strict();
  const prefix = z
    .object({
      $comment: z.string().optional(),
      prefix: z.string().max(117),
      credentials: z.array(credential).min(1).max(2),
      keys: z.array(key).default([]),
    })
    .strict();
  return z
    .object({
      $comment: z.string().optional(),
      enabled: z.boolean().default(true),
      host: z.string().min(1).optional(),
      port: z.number().int().min(0).max(65535).optional(),
      insecureHttp: z.boolean().default(false),
      tls: z.object(tlsFileFields).strict().optional(),
      regions: z.array(z.string().regex(REGION)).min(1).optional(),
      healthKey: z.string().regex(KEY_REF, 'must be a key id (UUID) or an alias name (alias/...)').optional(),
      healthCacheSeconds: z.number().int().min(0).max(60).default(30),
      secondaryAuthorization: z.boolean().default(false),
      uriPrefixes: z.array(prefix).default([]),
    })
    .strict();
}

export interface XksCredential {
  accessKeyId: string;
  secretAccessKey: Secret;
}

export interface XksPrefixConfig {
  /** '' or '/a/b': the path before /kms/xks/v1. */
  prefix: string;
  credentials: XksCredential[];
  keys: XksKeyBinding[];
}

/** The listener's TLS (shared with the AWS API listener: src/net). */
export type XksTlsConfig = TlsSettings;

export interface XksConfig {
  host: string;
  port: number;
  /** Development only: plain HTTP, allowed on loopback addresses only. */
  insecureHttp: boolean;
  tls?: XksTlsConfig | undefined;
  /** SigV4 regions accepted; undefined accepts the region each request names (KMS signs with its own). */
  regions?: string[] | undefined;
  healthKey?: string | undefined;
  healthCacheMs: number;
  secondaryAuthorization: boolean;
  uriPrefixes: XksPrefixConfig[];
}

type SecretReader<S> = (source: S, what: string) => Secret;

interface ResolveOptions<S> {
  env: NodeJS.ProcessEnv;
  cwd: string;
  readSecret: SecretReader<S>;
  fail(message: string): never;
}

function flag(env: NodeJS.ProcessEnv, name: string, fail: (m: string) => never): boolean | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  return fail(`${name} must be true or false`);
}

/** '/a/b', 'a/b', '/a/b/' → '/a/b'; '' or '/' → ''. */
function normalizePrefix(p: string, fail: (m: string) => never): string {
  const trimmed = p.replace(/\/+$/, '');
  const prefix = trimmed === '' ? '' : trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
  if (!URI_PREFIX.test(prefix) || (prefix + '/kms/xks/v1').length > 128) {
    fail(`xks uri prefix '${p}' must be segments of A-Z a-z 0-9 _ - separated by '/', at most 117 characters`);
  }
  return prefix;
}

/** "foo=alias/x,1234abcd-…,bar=1234abcd-…" → key entries. */
function keysFromEnv(v: string, fail: (m: string) => never) {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const eq = entry.indexOf('=');
      const keyId = eq < 0 ? entry : entry.slice(eq + 1);
      const externalKeyId = eq < 0 ? undefined : entry.slice(0, eq);
      if (!KEY_REF.test(keyId)) fail(`P11KMS_XKS_KEYS: '${keyId}' is not a key id (UUID) or alias name`);
      return { keyId, externalKeyId, usage: undefined };
    });
}

function binding(
  k: { keyId: string; externalKeyId?: string | undefined; usage?: readonly ('ENCRYPT' | 'DECRYPT')[] | undefined },
  fail: (m: string) => never,
): XksKeyBinding {
  let externalKeyId = k.externalKeyId;
  if (externalKeyId === undefined) {
    const implied = k.keyId.startsWith('alias/') ? k.keyId.slice('alias/'.length) : k.keyId;
    if (!XKS_EXTERNAL_KEY_ID.test(implied)) {
      fail(`xks key ${k.keyId}: give an externalKeyId (A-Z a-z 0-9 . _ -), the alias name cannot serve as one`);
    }
    externalKeyId = implied;
  } else if (!XKS_EXTERNAL_KEY_ID.test(externalKeyId)) {
    fail(`xks externalKeyId '${externalKeyId}' must be 1 to 128 characters of A-Z a-z 0-9 . _ -`);
  }
  const usage = k.usage ?? USAGES;
  return {
    externalKeyId,
    keyRef: k.keyId,
    allowEncrypt: usage.includes('ENCRYPT'),
    allowDecrypt: usage.includes('DECRYPT'),
  };
}

/**
 * The effective XKS configuration, or undefined when the listener is off. Throws (through
 * `fail`) with a message naming the setting; never includes a secret.
 */
export function resolveXksConfig<S>(
  file: z.output<ReturnType<typeof xksFileSchema<z.ZodType<S>>>> | undefined,
  { env, cwd, readSecret, fail }: ResolveOptions<S>,
): XksConfig | undefined {
  const enabled = flag(env, 'P11KMS_XKS_ENABLED', fail) ?? (file ? file.enabled : false);
  if (!enabled) return undefined;
  const host = env.P11KMS_XKS_HOST || file?.host || '127.0.0.1';
  const portEnv = env.P11KMS_XKS_PORT;
  if (portEnv !== undefined && portEnv !== '' && !/^\d+$/.test(portEnv)) fail('P11KMS_XKS_PORT must be a whole number');
  const port = portEnv ? Number(portEnv) : (file?.port ?? 8443);
  if (port > 65535) fail('P11KMS_XKS_PORT must be at most 65535');
  const insecureHttp = flag(env, 'P11KMS_XKS_INSECURE_HTTP', fail) ?? file?.insecureHttp ?? false;

  const tlsFiles = {
    certFile: env.P11KMS_XKS_TLS_CERT || file?.tls?.certFile,
    keyFile: env.P11KMS_XKS_TLS_KEY || file?.tls?.keyFile,
    clientCaFile: env.P11KMS_XKS_TLS_CLIENT_CA || file?.tls?.clientCaFile,
    clientSubjectNames: listFromEnv(env.P11KMS_XKS_TLS_CLIENT_SUBJECT) ?? file?.tls?.clientSubjectNames,
    watchIntervalMs: file?.tls?.watchIntervalMs,
  };
  let tls: XksTlsConfig | undefined;
  if (insecureHttp) {
    if (!isLoopbackHost(host)) fail(`xks.insecureHttp (development mode) is allowed on loopback addresses only, not '${host}'`);
    if (tlsFiles.certFile || tlsFiles.keyFile) fail('xks: choose either tls or insecureHttp, not both');
  } else {
    if (!tlsFiles.certFile || !tlsFiles.keyFile) {
      fail('xks.tls.certFile and xks.tls.keyFile are required (or xks.insecureHttp on loopback, for development)');
    }
    tls = resolveTls(tlsFiles, 'xks.tls', cwd, fail);
  }

  const prefixes = new Map<string, XksPrefixConfig>();
  for (const p of file?.uriPrefixes ?? []) {
    const prefix = normalizePrefix(p.prefix, fail);
    if (prefixes.has(prefix)) fail(`xks.uriPrefixes: '${prefix}' is configured twice`);
    prefixes.set(prefix, {
      prefix,
      credentials: p.credentials.map((c, i) => ({
        accessKeyId: c.accessKeyId,
        secretAccessKey: readSecret(c.secretAccessKey as S, `xks prefix '${prefix}' credential ${i + 1} secret`),
      })),
      keys: p.keys.map((k) => binding(k, fail)),
    });
  }
  if (env.P11KMS_XKS_ACCESS_KEY_ID) {
    // A development prefix entirely from the environment; it replaces a file prefix with the same path.
    const prefix = normalizePrefix(env.P11KMS_XKS_URI_PREFIX ?? '', fail);
    const credentials: XksCredential[] = [];
    for (const suffix of ['', '_2']) {
      const accessKeyId = env[`P11KMS_XKS_ACCESS_KEY_ID${suffix}`];
      if (!accessKeyId) continue;
      const secret =
        env[`P11KMS_XKS_SECRET_ACCESS_KEY${suffix}`] ||
        fail(`P11KMS_XKS_SECRET_ACCESS_KEY${suffix} must be set with P11KMS_XKS_ACCESS_KEY_ID${suffix}`);
      credentials.push({ accessKeyId, secretAccessKey: new Secret(secret) });
    }
    prefixes.set(prefix, {
      prefix,
      credentials,
      keys: keysFromEnv(env.P11KMS_XKS_KEYS ?? '', fail).map((k) => binding(k, fail)),
    });
  }
  if (prefixes.size === 0) fail('xks: at least one uriPrefixes entry (or P11KMS_XKS_ACCESS_KEY_ID) is required');
  for (const p of prefixes.values()) {
    const ids = new Set<string>();
    for (const c of p.credentials) {
      if (!XKS_ACCESS_KEY_ID.test(c.accessKeyId)) {
        fail(`xks prefix '${p.prefix}': access key id must be 20 to 30 characters of A-Z and 2-7`);
      }
      if (!XKS_SECRET_ACCESS_KEY.test(c.secretAccessKey.reveal())) {
        fail(`xks prefix '${p.prefix}': the secret of ${c.accessKeyId} must be 43 to 64 characters of A-Z a-z 0-9 / + =`);
      }
      if (ids.has(c.accessKeyId)) fail(`xks prefix '${p.prefix}': access key id ${c.accessKeyId} is listed twice`);
      ids.add(c.accessKeyId);
    }
    const external = new Set<string>();
    for (const k of p.keys) {
      if (external.has(k.externalKeyId)) fail(`xks prefix '${p.prefix}': external key id ${k.externalKeyId} is listed twice`);
      external.add(k.externalKeyId);
    }
  }

  const healthKey = env.P11KMS_XKS_HEALTH_KEY || file?.healthKey;
  if (healthKey !== undefined && !KEY_REF.test(healthKey)) fail('P11KMS_XKS_HEALTH_KEY must be a key id (UUID) or alias name');
  return {
    host,
    port,
    insecureHttp,
    tls,
    regions: file?.regions,
    healthKey,
    healthCacheMs: (file?.healthCacheSeconds ?? 30) * 1000,
    secondaryAuthorization: flag(env, 'P11KMS_XKS_SECONDARY_AUTHORIZATION', fail) ?? file?.secondaryAuthorization ?? false,
    uriPrefixes: [...prefixes.values()],
  };
}
