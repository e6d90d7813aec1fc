import { isIP } from 'node:net';

/**
 * Matching primitives for policy evaluation: IAM wildcards (`*` any run, `?` one character),
 * ARN component matching, IP/CIDR containment and date parsing. Everything here is compiled
 * once per policy and then run per request, so the per-request work is a few comparisons.
 */

const REGEX_SPECIAL = /[.+^${}()|[\]\\]/g;

/** A compiled IAM wildcard pattern: `*` matches any run of characters, `?` exactly one. */
export function globRegExp(pattern: string, ignoreCase = false): RegExp {
  const body = pattern.replace(REGEX_SPECIAL, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, ignoreCase ? 'is' : 's');
}

export const hasWildcard = (s: string): boolean => s.includes('*') || s.includes('?');

/**
 * A set of patterns compiled for fast membership: `any` for a lone `*`, exact strings in a Set,
 * wildcard patterns as regular expressions. Case-insensitive sets store lower-cased values and
 * must be queried with lower-cased input.
 */
export interface PatternSet {
  any: boolean;
  exact: Set<string>;
  patterns: RegExp[];
}

export function compilePatterns(values: readonly string[], ignoreCase: boolean): PatternSet {
  const set: PatternSet = { any: false, exact: new Set(), patterns: [] };
  for (const raw of values) {
    const v = ignoreCase ? raw.toLowerCase() : raw;
    if (v === '*') set.any = true;
    else if (hasWildcard(v)) set.patterns.push(globRegExp(v, ignoreCase));
    else set.exact.add(v);
  }
  return set;
}

export function matchesPatterns(set: PatternSet, value: string): boolean {
  if (set.any || set.exact.has(value)) return true;
  for (const re of set.patterns) if (re.test(value)) return true;
  return false;
}

/**
 * ARN comparison as IAM's ArnEquals/ArnLike do it: both sides split into their six
 * colon-separated components (the resource part keeps its own colons), each component
 * matched with wildcards, case-sensitively.
 */
export function compileArnPattern(pattern: string): (arn: string) => boolean {
  const parts = splitArn(pattern);
  if (!parts) {
    const re = globRegExp(pattern);
    return (arn) => re.test(arn);
  }
  const res = parts.map((p) => (hasWildcard(p) ? globRegExp(p) : p));
  return (arn) => {
    const a = splitArn(arn);
    if (!a) return false;
    for (let i = 0; i < 6; i++) {
      const r = res[i] as string | RegExp;
      const c = a[i] as string;
      if (typeof r === 'string' ? r !== c : !r.test(c)) return false;
    }
    return true;
  };
}

function splitArn(s: string): string[] | undefined {
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < 5; i++) {
    const at = s.indexOf(':', from);
    if (at < 0) return undefined;
    parts.push(s.slice(from, at));
    from = at + 1;
  }
  parts.push(s.slice(from));
  return parts[0] === 'arn' || parts[0] === '*' ? parts : undefined;
}

/** An IPv4 or IPv6 address as a bigint and its family; IPv4-mapped IPv6 becomes IPv4. */
interface Ip {
  v: 4 | 6;
  n: bigint;
}

export function parseIp(text: string): Ip | undefined {
  let s = text.trim();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(s);
  if (mapped) s = mapped[1] as string;
  const family = isIP(s);
  if (family === 4) {
    let n = 0n;
    for (const octet of s.split('.')) n = (n << 8n) | BigInt(Number(octet));
    return { v: 4, n };
  }
  if (family === 6) {
    const zone = s.indexOf('%');
    if (zone >= 0) s = s.slice(0, zone);
    let head = s;
    let tail = '';
    const dbl = s.indexOf('::');
    if (dbl >= 0) {
      head = s.slice(0, dbl);
      tail = s.slice(dbl + 2);
    }
    const groups = (part: string): number[] => {
      if (!part) return [];
      const out: number[] = [];
      for (const g of part.split(':')) {
        if (g.includes('.')) {
          const ip4 = parseIp(g);
          if (!ip4 || ip4.v !== 4) return [NaN];
          out.push(Number(ip4.n >> 16n), Number(ip4.n & 0xffffn));
        } else out.push(parseInt(g, 16));
      }
      return out;
    };
    const h = groups(head);
    const t = groups(tail);
    const all = dbl >= 0 ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
    if (all.length !== 8 || all.some((g) => Number.isNaN(g))) return undefined;
    let n = 0n;
    for (const g of all) n = (n << 16n) | BigInt(g);
    const ip: Ip = { v: 6, n };
    // ::ffff:a.b.c.d written in hex groups is still an IPv4 client.
    if (n >> 32n === 0xffffn) return { v: 4, n: n & 0xffffffffn };
    return ip;
  }
  return undefined;
}

/** A CIDR block (or a single address) compiled to a containment test; undefined when malformed. */
export function compileCidr(text: string): ((ip: string) => boolean) | undefined {
  const [addr, bitsText, extra] = text.trim().split('/');
  if (addr === undefined || extra !== undefined) return undefined;
  const base = parseIp(addr);
  if (!base) return undefined;
  const width = base.v === 4 ? 32 : 128;
  const bits = bitsText === undefined ? width : /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (!(bits >= 0 && bits <= width)) return undefined;
  const shift = BigInt(width - bits);
  const prefix = base.n >> shift;
  return (ipText) => {
    const ip = parseIp(ipText);
    return ip !== undefined && ip.v === base.v && ip.n >> shift === prefix;
  };
}

/** IAM date values: ISO 8601 text or epoch seconds; milliseconds since the epoch, NaN when invalid. */
export function parseDate(text: string): number {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  if (!/^\d{4}-\d{2}-\d{2}/.test(s)) return NaN;
  return Date.parse(s);
}

/** IAM numeric values: decimal numbers, NaN when invalid. */
export function parseNumber(text: string): number {
  const s = text.trim();
  return /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(s) ? Number(s) : NaN;
}
