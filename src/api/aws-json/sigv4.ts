/**
 * AWS Signature Version 4 verifier for incoming AWS JSON 1.1 (KMS) requests.
 *
 * Header-based authentication only (`Authorization: AWS4-HMAC-SHA256 ...`). The canonical request is
 * rebuilt from the request exactly as received, following the SigV4 rules for non-S3 services (the
 * path is normalised and each segment of the wire-form path is URI-encoded again, as the AWS SDKs
 * do), and the signature is compared in constant time. Uses only node:crypto.
 *
 * Error messages follow AWS's wording where it is known, and never contain the secret access key,
 * the signing key or the computed signature.
 */
import { createHmac, createSecretKey, hash, timingSafeEqual, type KeyObject } from 'node:crypto';
import { Errors } from '../../errors.js';
import type { Clock } from '../../clock.js';
import type { SigningCredential } from '../../model/identity.js';

export type { SigningCredential };

export interface IncomingSignedRequest {
  /** HTTP method as received, e.g. 'POST'. */
  method: string;
  /** Raw request target as received, e.g. '/' or '/path?x=1' (express `req.originalUrl`). */
  url: string;
  /** Node's IncomingMessage headers (lower-case names). */
  headers: Record<string, string | string[] | undefined>;
  /** Exact raw body bytes. */
  body: Buffer;
}

export interface SigV4VerifierOptions {
  /** Signing service name, e.g. 'kms'. */
  service: string;
  /** The region, e.g. 'us-east-1', or every region served (a request may be scoped to any of them). */
  region: string | readonly string[];
  clock: Clock;
  /** Allowed clock skew either way; default 5 minutes. */
  maxSkewMs?: number;
  lookup(accessKeyId: string): SigningCredential | undefined;
}

const ALGORITHM = 'AWS4-HMAC-SHA256';
const TERMINATOR = 'aws4_request';
const DEFAULT_MAX_SKEW_MS = 5 * 60 * 1000;
const MAX_CACHED_KEYS = 1000;

const MSG_MISSING_TOKEN = 'Missing Authentication Token';
const MSG_UNRECOGNIZED = 'The security token included in the request is invalid.';
const MSG_MISMATCH =
  'The request signature we calculated does not match the signature you provided. ' +
  'Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';

interface ParsedAuthorization {
  accessKeyId: string;
  scopeDate: string;
  scopeRegion: string;
  scopeService: string;
  scopeTerminator: string;
  /** `date/region/service/aws4_request`, verbatim from the Credential parameter. */
  scope: string;
  /** SignedHeaders parameter, verbatim. */
  signedHeaders: string;
  signedHeaderNames: string[];
  /** 32 bytes decoded from the 64-hex Signature parameter. */
  signature: Buffer;
}

interface CachedKey {
  secret: string;
  /**
   * A KeyObject, not the Buffer: createHmac imports a Buffer key on every call, which cost
   * 11.4 µs per HMAC against 3.9 µs with a KeyObject (node 20, 900-byte string to sign).
   */
  key: KeyObject;
}

/**
 * One-shot SHA-256 (crypto.hash, Node ≥ 20.12) instead of createHash().update().digest(): no
 * Hash stream object per call, 2.7 → 1.2 µs for a 120-byte body and 4.0 → 2.7 µs for a
 * 900-byte canonical request (node 20, micro-benchmark).
 */
const sha256hex = (data: string | Buffer): string => hash('sha256', data, 'hex');

export class SigV4Verifier {
  private readonly service: string;
  private readonly regions: readonly string[];
  private readonly clock: Clock;
  private readonly maxSkewMs: number;
  private readonly lookup: (accessKeyId: string) => SigningCredential | undefined;
  /** Derived signing keys, keyed by accessKeyId|date|region|service; the entry remembers its secret. */
  private readonly keyCache = new Map<string, CachedKey>();

  constructor(opts: SigV4VerifierOptions) {
    this.service = opts.service;
    this.regions = typeof opts.region === 'string' ? [opts.region] : opts.region;
    this.clock = opts.clock;
    this.maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
    this.lookup = opts.lookup;
  }

  /** Returns the credential whose secret produced the signature, or throws a KmsError. */
  verify(req: IncomingSignedRequest): SigningCredential {
    return this.verifyScoped(req).credential;
  }

  /** verify(), also returning the region of the credential scope (the request's region). */
  verifyScoped(req: IncomingSignedRequest): { credential: SigningCredential; region: string } {
    const { path, query } = splitTarget(req.url);

    const authorization = headerString(req.headers['authorization']);
    if (authorization === undefined) {
      if (query !== '' && hasQueryParam(query, 'X-Amz-Algorithm')) {
        throw Errors.incompleteSignature(
          'Query-string (presigned) authentication is not supported; sign the request with an Authorization header.',
        );
      }
      throw Errors.missingAuthToken(MSG_MISSING_TOKEN);
    }
    const auth = parseAuthorization(authorization);

    // Request timestamp: X-Amz-Date, else Date.
    let amzDate: string;
    let requestTime: number;
    let dateHeaderName: string;
    const xAmzDate = headerString(req.headers['x-amz-date']);
    if (xAmzDate !== undefined) {
      const t = parseAmzDate(xAmzDate.trim());
      if (t === undefined) {
        throw Errors.incompleteSignature(
          `Date must be in ISO-8601 'basic format'. Got '${truncate(xAmzDate)}'. See http://en.wikipedia.org/wiki/ISO_8601`,
        );
      }
      amzDate = xAmzDate.trim();
      requestTime = t;
      dateHeaderName = 'x-amz-date';
    } else {
      const httpDate = headerString(req.headers['date']);
      if (httpDate === undefined) {
        throw Errors.incompleteSignature(
          "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        );
      }
      const t = Date.parse(httpDate);
      if (!Number.isFinite(t)) {
        throw Errors.incompleteSignature(`Date header could not be parsed: '${truncate(httpDate)}'.`);
      }
      requestTime = Math.floor(t / 1000) * 1000;
      amzDate = formatAmzDate(requestTime);
      dateHeaderName = 'date';
    }

    const signedNames = auth.signedHeaderNames;
    if (!signedNames.includes('host')) {
      throw Errors.incompleteSignature("Signed header 'host' is missing from the Authorization header's SignedHeaders.");
    }
    if (!signedNames.includes(dateHeaderName)) {
      throw Errors.incompleteSignature(
        `Signed header '${dateHeaderName}' is missing from the Authorization header's SignedHeaders.`,
      );
    }

    // Credential scope.
    const shortDate = amzDate.slice(0, 8);
    if (auth.scopeDate !== shortDate) {
      throw Errors.invalidSignature(
        `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: ` +
          `'${truncate(auth.scopeDate)}' != '${shortDate}', from '${amzDate}'.`,
      );
    }
    if (!this.regions.includes(auth.scopeRegion)) {
      throw Errors.invalidSignature(
        `Credential should be scoped to a valid region, not '${truncate(auth.scopeRegion)}'.`,
      );
    }
    if (auth.scopeService !== this.service) {
      throw Errors.invalidSignature(`Credential should be scoped to correct service: '${this.service}'.`);
    }
    if (auth.scopeTerminator !== TERMINATOR) {
      throw Errors.invalidSignature(
        `Credential should be scoped with a valid terminator: '${TERMINATOR}', not '${truncate(auth.scopeTerminator)}'.`,
      );
    }

    // Clock skew.
    const now = this.clock.now().getTime();
    if (requestTime < now - this.maxSkewMs) {
      throw Errors.invalidSignature(
        `Signature expired: ${amzDate} is now earlier than ${formatAmzDate(now - this.maxSkewMs)} ` +
          `(${formatAmzDate(now)} - ${skewText(this.maxSkewMs)})`,
      );
    }
    if (requestTime > now + this.maxSkewMs) {
      throw Errors.invalidSignature(
        `Signature not yet current: ${amzDate} is still later than ${formatAmzDate(now + this.maxSkewMs)} ` +
          `(${formatAmzDate(now)} + ${skewText(this.maxSkewMs)})`,
      );
    }

    const credential = this.lookup(auth.accessKeyId);
    if (credential === undefined) {
      throw Errors.unrecognizedClient(MSG_UNRECOGNIZED);
    }

    const payloadHash = sha256hex(req.body);
    const declaredHash = headerString(req.headers['x-amz-content-sha256']);
    if (declaredHash !== undefined && declaredHash.trim().toLowerCase() !== payloadHash) {
      throw Errors.invalidSignature(
        'The provided \'x-amz-content-sha256\' header does not match what was computed.',
      );
    }

    // Canonical request.
    let canonicalHeaders = '';
    for (const name of signedNames) {
      const v = Object.prototype.hasOwnProperty.call(req.headers, name) ? req.headers[name] : undefined;
      canonicalHeaders += name + ':' + canonicalHeaderValue(v) + '\n';
    }
    const canonicalRequest =
      req.method +
      '\n' +
      canonicalUri(path) +
      '\n' +
      canonicalQuery(query) +
      '\n' +
      canonicalHeaders +
      '\n' +
      auth.signedHeaders +
      '\n' +
      payloadHash;

    const stringToSign =
      ALGORITHM +
      '\n' +
      amzDate +
      '\n' +
      auth.scope +
      '\n' +
      sha256hex(canonicalRequest);

    const signingKey = this.signingKey(credential, shortDate, auth.scopeRegion);
    const expected = createHmac('sha256', signingKey).update(stringToSign, 'utf8').digest();
    if (expected.length !== auth.signature.length || !timingSafeEqual(expected, auth.signature)) {
      throw Errors.invalidSignature(MSG_MISMATCH);
    }
    return { credential, region: auth.scopeRegion };
  }

  private signingKey(credential: SigningCredential, shortDate: string, region: string): KeyObject {
    const cacheKey = `${credential.accessKeyId}|${shortDate}|${region}|${this.service}`;
    const hit = this.keyCache.get(cacheKey);
    if (hit !== undefined && hit.secret === credential.secretAccessKey) {
      return hit.key;
    }
    const kDate = createHmac('sha256', 'AWS4' + credential.secretAccessKey).update(shortDate).digest();
    const kRegion = createHmac('sha256', kDate).update(region).digest();
    const kService = createHmac('sha256', kRegion).update(this.service).digest();
    const key = createSecretKey(createHmac('sha256', kService).update(TERMINATOR).digest());
    if (this.keyCache.size >= MAX_CACHED_KEYS) {
      this.keyCache.clear();
    }
    this.keyCache.set(cacheKey, { secret: credential.secretAccessKey, key });
    return key;
  }
}

// ---------------------------------------------------------------------------------------------
// Authorization header

function parseAuthorization(header: string): ParsedAuthorization {
  const value = header.trim();
  let sp = 0;
  while (sp < value.length && value[sp] !== ' ' && value[sp] !== '\t') sp++;
  const algorithm = value.slice(0, sp);
  if (algorithm !== ALGORITHM) {
    throw Errors.incompleteSignature(
      `Unsupported Authorization algorithm '${truncate(algorithm)}'; expected '${ALGORITHM}'.`,
    );
  }

  // Parameters are separated by commas and/or whitespace; values never contain either.
  let credential: string | undefined;
  let signedHeaders: string | undefined;
  let signature: string | undefined;
  let i = sp;
  const n = value.length;
  while (i < n) {
    const c = value.charCodeAt(i);
    if (c === 0x2c /* , */ || c === 0x20 || c === 0x09) {
      i++;
      continue;
    }
    let j = i;
    while (j < n) {
      const d = value.charCodeAt(j);
      if (d === 0x2c || d === 0x20 || d === 0x09) break;
      j++;
    }
    const part = value.slice(i, j);
    i = j;
    const eq = part.indexOf('=');
    if (eq <= 0) {
      throw Errors.incompleteSignature(
        `Authorization header parameter '${truncate(part)}' is not of the form 'key=value'.`,
      );
    }
    const key = part.slice(0, eq);
    const val = part.slice(eq + 1);
    if (key === 'Credential' || key === 'SignedHeaders' || key === 'Signature') {
      const seen = key === 'Credential' ? credential : key === 'SignedHeaders' ? signedHeaders : signature;
      if (seen !== undefined) {
        throw Errors.incompleteSignature(`Authorization header has a duplicate '${key}' parameter.`);
      }
      if (key === 'Credential') credential = val;
      else if (key === 'SignedHeaders') signedHeaders = val;
      else signature = val;
    }
    // Unknown parameters are ignored.
  }

  const missing: string[] = [];
  if (!credential) missing.push("Authorization header requires 'Credential' parameter.");
  if (!signature) missing.push("Authorization header requires 'Signature' parameter.");
  if (!signedHeaders) missing.push("Authorization header requires 'SignedHeaders' parameter.");
  if (missing.length > 0 || !credential || !signature || !signedHeaders) {
    throw Errors.incompleteSignature(missing.join(' '));
  }

  // Credential = AKID/YYYYMMDD/region/service/aws4_request
  const parts = credential.split('/');
  if (parts.length !== 5 || parts.some((p) => p.length === 0)) {
    throw Errors.incompleteSignature(
      "Authorization header's Credential parameter is malformed; expected " +
        "'<AccessKeyId>/<YYYYMMDD>/<region>/<service>/aws4_request'.",
    );
  }
  const [accessKeyId, scopeDate, scopeRegion, scopeService, scopeTerminator] = parts as [
    string,
    string,
    string,
    string,
    string,
  ];

  if (signature.length !== 64 || !isHex(signature)) {
    throw Errors.incompleteSignature(
      "Authorization header's Signature parameter must be 64 hexadecimal characters.",
    );
  }

  const signedHeaderNames = signedHeaders.split(';');
  for (const name of signedHeaderNames) {
    if (name.length === 0 || name !== name.toLowerCase()) {
      throw Errors.incompleteSignature(
        "Authorization header's SignedHeaders parameter must be a ';'-separated list of lower-case header names.",
      );
    }
  }

  return {
    accessKeyId,
    scopeDate,
    scopeRegion,
    scopeService,
    scopeTerminator,
    scope: credential.slice(accessKeyId.length + 1),
    signedHeaders,
    signedHeaderNames,
    signature: Buffer.from(signature, 'hex'),
  };
}

function isHex(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
    if (!ok) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Dates

/** Parses YYYYMMDDTHHMMSSZ strictly; returns epoch ms or undefined. */
function parseAmzDate(s: string): number | undefined {
  if (s.length !== 16 || s[8] !== 'T' || s[15] !== 'Z') return undefined;
  for (let i = 0; i < 15; i++) {
    if (i === 8) continue;
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
  }
  const year = Number(s.slice(0, 4));
  const month = Number(s.slice(4, 6));
  const day = Number(s.slice(6, 8));
  const hour = Number(s.slice(9, 11));
  const minute = Number(s.slice(11, 13));
  const second = Number(s.slice(13, 15));
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) {
    return undefined;
  }
  const t = Date.UTC(year, month - 1, day, hour, minute, second);
  // Reject dates that roll over (e.g. 20260231).
  if (new Date(t).getUTCDate() !== day) return undefined;
  return t;
}

function formatAmzDate(ms: number): string {
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  return (
    iso.slice(0, 4) +
    iso.slice(5, 7) +
    iso.slice(8, 10) +
    'T' +
    iso.slice(11, 13) +
    iso.slice(14, 16) +
    iso.slice(17, 19) +
    'Z'
  );
}

function skewText(ms: number): string {
  return ms % 60000 === 0 ? `${ms / 60000} min.` : `${ms / 1000} sec.`;
}

// ---------------------------------------------------------------------------------------------
// Canonical request pieces

function splitTarget(url: string): { path: string; query: string } {
  let target = url;
  // Absolute-form request target (e.g. through a proxy): drop scheme and authority.
  if (target.length > 0 && target[0] !== '/') {
    const scheme = target.indexOf('://');
    if (scheme > 0) {
      const slash = target.indexOf('/', scheme + 3);
      const q = target.indexOf('?', scheme + 3);
      if (slash < 0 || (q >= 0 && q < slash)) {
        target = '/' + (q >= 0 ? target.slice(q) : '');
      } else {
        target = target.slice(slash);
      }
    }
  }
  const hash = target.indexOf('#');
  if (hash >= 0) target = target.slice(0, hash);
  const q = target.indexOf('?');
  if (q < 0) return { path: target, query: '' };
  return { path: target.slice(0, q), query: target.slice(q + 1) };
}

function hasQueryParam(query: string, name: string): boolean {
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (safeDecode(key) === name) return true;
  }
  return false;
}

/**
 * Canonical URI for non-S3 services, as the AWS SDKs compute it: remove empty and '.' segments,
 * resolve '..', then URI-encode each segment of the path *as it appears on the wire* (so an
 * already percent-encoded path is encoded a second time).
 */
function canonicalUri(path: string): string {
  if (path === '/' || path === '') return '/';
  const segments: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') segments.pop();
    else segments.push(uriEncode(seg));
  }
  if (segments.length === 0) return '/';
  return (path[0] === '/' ? '/' : '') + segments.join('/') + (path[path.length - 1] === '/' ? '/' : '');
}

/** Canonical query string: decode each name/value, re-encode per RFC 3986, sort by name then value. */
function canonicalQuery(query: string): string {
  if (query === '') return '';
  const pairs: Array<[string, string]> = [];
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const rawKey = eq < 0 ? pair : pair.slice(0, eq);
    const rawValue = eq < 0 ? '' : pair.slice(eq + 1);
    pairs.push([uriEncode(safeDecode(rawKey)), uriEncode(safeDecode(rawValue))]);
  }
  if (pairs.length > 1) {
    pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  }
  let out = '';
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!;
    out += (i === 0 ? '' : '&') + p[0] + '=' + p[1];
  }
  return out;
}

function safeDecode(s: string): string {
  if (s.indexOf('%') < 0) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** RFC 3986 encoding: everything except A-Z a-z 0-9 - _ . ~ is percent-encoded (UTF-8, upper-case hex). */
function uriEncode(s: string): string {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (
      !(
        (c >= 0x61 && c <= 0x7a) ||
        (c >= 0x41 && c <= 0x5a) ||
        (c >= 0x30 && c <= 0x39) ||
        c === 0x2d ||
        c === 0x2e ||
        c === 0x5f ||
        c === 0x7e
      )
    ) {
      plain = false;
      break;
    }
  }
  if (plain) return s;
  let encoded: string;
  try {
    encoded = encodeURIComponent(s);
  } catch {
    // Lone surrogate: cannot be represented; encode via Buffer (replacement character), which
    // will simply fail to match the client's signature.
    encoded = encodeURIComponent(Buffer.from(s, 'utf8').toString('utf8'));
  }
  return encoded.replace(/[!'()*]/g, (ch) => '%' + ch.charCodeAt(0).toString(16).toUpperCase());
}

function headerString(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  return v.length === 0 ? undefined : v.join(',');
}

/** Trim and collapse runs of whitespace; multiple values are joined with ','. Absent → ''. */
function canonicalHeaderValue(v: string | string[] | undefined): string {
  if (typeof v === 'string') return trimAll(v);
  if (!Array.isArray(v)) return '';
  let out = '';
  for (let i = 0; i < v.length; i++) out += (i === 0 ? '' : ',') + trimAll(v[i]!);
  return out;
}

function trimAll(s: string): string {
  // Fast path: nothing to collapse or trim.
  let clean = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x09 || c === 0x0a || c === 0x0d || (c === 0x20 && (i === 0 || i === s.length - 1 || s.charCodeAt(i + 1) === 0x20))) {
      clean = false;
      break;
    }
  }
  if (clean) return s;
  return s.replace(/[ \t\r\n]+/g, ' ').replace(/^ | $/g, '');
}

function truncate(s: string, max = 64): string {
  return s.length > max ? s.slice(0, max) + '...' : s;
}
