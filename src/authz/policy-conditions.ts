import {
  compileArnPattern, compileCidr, globRegExp, hasWildcard, parseDate, parseNumber,
} from './policy-match.js';

/**
 * The request context a condition reads: condition key (lower case) → its values, or undefined
 * when the key is absent. Single-valued keys have one value; multi-valued keys any number.
 */
export interface Facts {
  get(lowerKey: string): readonly string[] | undefined;
}

/** A compiled condition: one operator, one key, its policy values. */
export type ConditionTest = (facts: Facts) => boolean;

export class ConditionError extends Error {}

type Compare = (policyValues: readonly string[]) => ((contextValue: string) => boolean) | string;

const anyString = (values: readonly string[], eq: (v: string) => boolean) => values.some(eq);

/**
 * Positive base operators: each returns, for the policy values, a test of one context value
 * (true when it matches any policy value) or an error message for an invalid policy value.
 * Negated operators (StringNotEquals, …) are the negation of their positive partner.
 */
const BASE: Record<string, Compare> = {
  StringEquals: (pv) => (c) => anyString(pv, (v) => v === c),
  StringEqualsIgnoreCase: (pv) => {
    const lower = pv.map((v) => v.toLowerCase());
    return (c) => lower.includes(c.toLowerCase());
  },
  StringLike: (pv) => {
    const exact = new Set(pv.filter((v) => !hasWildcard(v)));
    const res = pv.filter(hasWildcard).map((v) => globRegExp(v));
    return (c) => exact.has(c) || res.some((r) => r.test(c));
  },
  NumericEquals: numeric((c, v) => c === v),
  NumericLessThan: numeric((c, v) => c < v),
  NumericLessThanEquals: numeric((c, v) => c <= v),
  NumericGreaterThan: numeric((c, v) => c > v),
  NumericGreaterThanEquals: numeric((c, v) => c >= v),
  DateEquals: dates((c, v) => c === v),
  DateLessThan: dates((c, v) => c < v),
  DateLessThanEquals: dates((c, v) => c <= v),
  DateGreaterThan: dates((c, v) => c > v),
  DateGreaterThanEquals: dates((c, v) => c >= v),
  Bool: (pv) => {
    const lower = pv.map((v) => v.toLowerCase());
    const bad = lower.find((v) => v !== 'true' && v !== 'false');
    if (bad !== undefined) return `Bool condition values must be true or false, not '${bad}'.`;
    return (c) => lower.includes(c.toLowerCase());
  },
  BinaryEquals: (pv) => (c) => pv.includes(c),
  IpAddress: (pv) => {
    const blocks = pv.map(compileCidr);
    const bad = pv.find((_, i) => blocks[i] === undefined);
    if (bad !== undefined) return `'${bad}' is not a valid IP address or CIDR block.`;
    return (c) => blocks.some((b) => (b as (ip: string) => boolean)(c));
  },
  ArnLike: (pv) => {
    const tests = pv.map(compileArnPattern);
    return (c) => tests.some((t) => t(c));
  },
};
BASE.ArnEquals = BASE.ArnLike as Compare;

const NEGATED: Record<string, string> = {
  StringNotEquals: 'StringEquals',
  StringNotEqualsIgnoreCase: 'StringEqualsIgnoreCase',
  StringNotLike: 'StringLike',
  NumericNotEquals: 'NumericEquals',
  DateNotEquals: 'DateEquals',
  NotIpAddress: 'IpAddress',
  ArnNotEquals: 'ArnEquals',
  ArnNotLike: 'ArnLike',
};

function numeric(cmp: (c: number, v: number) => boolean): Compare {
  return (pv) => {
    const nums = pv.map(parseNumber);
    const bad = pv.find((_, i) => Number.isNaN(nums[i]));
    if (bad !== undefined) return `'${bad}' is not a valid number.`;
    return (c) => {
      const n = parseNumber(c);
      return !Number.isNaN(n) && nums.some((v) => cmp(n, v));
    };
  };
}

function dates(cmp: (c: number, v: number) => boolean): Compare {
  return (pv) => {
    const ds = pv.map(parseDate);
    const bad = pv.find((_, i) => Number.isNaN(ds[i]));
    if (bad !== undefined) return `'${bad}' is not a valid date.`;
    return (c) => {
      const d = parseDate(c);
      return !Number.isNaN(d) && ds.some((v) => cmp(d, v));
    };
  };
}

/** Every operator name this evaluator knows, without set prefix or IfExists suffix. */
export const OPERATORS = new Set([...Object.keys(BASE), ...Object.keys(NEGATED), 'Null']);

/**
 * Condition keys whose request value is a set. IAM requires a set operator with them; used
 * without one they never match when present (the reading of @cloud-copilot/iam-simulate,
 * against which this evaluator is tested).
 */
export const MULTI_VALUED_KEYS = new Set(['kms:encryptioncontextkeys', 'kms:grantoperations', 'kms:resourcealiases', 'aws:tagkeys']);

const OPERATOR_SYNTAX = /^(?:(ForAnyValue|ForAllValues):)?([A-Za-z]+?)(IfExists)?$/;

/** Condition values are strings, numbers or booleans, alone or in a non-empty list. */
function policyValues(raw: unknown): string[] | undefined {
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) return undefined;
  const out: string[] = [];
  for (const v of list) {
    if (typeof v === 'string') out.push(v);
    else if (typeof v === 'number' && Number.isFinite(v)) out.push(String(v));
    else if (typeof v === 'boolean') out.push(String(v));
    else return undefined;
  }
  return out;
}

/**
 * Compiles one `"Operator": {"key": values}` entry into a test. IAM semantics:
 * - several values for one key are OR'ed; several keys (and operators) are AND'ed by the caller;
 * - a missing key fails a positive operator and satisfies a negated one; `...IfExists` makes a
 *   missing key satisfy any operator; `Null` tests presence;
 * - `ForAnyValue:` needs at least one context value to satisfy the operator (false when absent);
 *   `ForAllValues:` needs every context value to (true when absent or empty);
 * - without a set operator, a key with several values matches when any value satisfies a positive
 *   operator, or when no value matches a negated one; a multi-valued key (MULTI_VALUED_KEYS)
 *   present in the request never matches without a set operator.
 */
export function compileCondition(operator: string, key: string, raw: unknown): ConditionTest {
  const m = OPERATOR_SYNTAX.exec(operator);
  const name = m?.[2] ?? '';
  if (!m || !OPERATORS.has(name) || (name === 'Null' && (m[1] || m[3]))) {
    throw new ConditionError(`Unknown condition operator '${operator}'.`);
  }
  const values = policyValues(raw);
  if (!values) throw new ConditionError(`Condition ${operator} for '${key}' needs a string, number or boolean value, or a non-empty list of them.`);
  const lowerKey = key.toLowerCase();
  if (name === 'Null') {
    const wants = values.map((v) => v.toLowerCase());
    const bad = wants.find((v) => v !== 'true' && v !== 'false');
    if (bad !== undefined) throw new ConditionError(`Null condition values must be true or false, not '${bad}'.`);
    return (facts) => {
      const v = facts.get(lowerKey);
      const absent = v === undefined || v.length === 0;
      return wants.some((w) => (w === 'true') === absent);
    };
  }
  const set = m[1];
  const ifExists = m[3] !== undefined;
  const negated = name in NEGATED;
  const compiled = (BASE[negated ? (NEGATED[name] as string) : name] as Compare)(values);
  if (typeof compiled === 'string') throw new ConditionError(compiled);
  const pos = compiled;
  const test = negated ? (c: string) => !pos(c) : pos;
  const multiWithoutSet = set === undefined && MULTI_VALUED_KEYS.has(lowerKey);
  return (facts) => {
    const ctx = facts.get(lowerKey);
    if (ctx === undefined || ctx.length === 0) {
      if (ifExists || set === 'ForAllValues') return true;
      if (set === 'ForAnyValue') return false;
      return negated;
    }
    if (multiWithoutSet) return false;
    if (set === 'ForAllValues') return ctx.every(test);
    if (set === 'ForAnyValue' || !negated) return ctx.some(test);
    return !ctx.some(pos);
  };
}
