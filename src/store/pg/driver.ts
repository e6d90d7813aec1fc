import { Errors } from '../../errors.js';
import type { SqlDriver, SqlStatement } from '../sql-driver.js';
import { PgError, unreachable, type SyncPg } from './sync-client.js';

/**
 * The SqlDriver subset on PostgreSQL (see ../sql-driver.ts). Translates the common dialect:
 * `?` and `@name` become `$n`, `IS ?` becomes IS NOT DISTINCT FROM. Transactions are real
 * PostgreSQL transactions (READ COMMITTED) on the one connection of the sync client; nested
 * ones are savepoints. A transaction never continues on a new connection: if the worker had to
 * reconnect mid-way (its generation changed), the transaction fails with a 503.
 */

interface Translated {
  text: string;
  /** For named parameters: the name of each $n, in order. */
  names?: string[];
}

export function translate(source: string): Translated {
  let text = '';
  let n = 0;
  const names: string[] = [];
  const byName = new Map<string, number>();
  let named = false;
  for (let i = 0; i < source.length; i++) {
    const ch = source[i] as string;
    if (ch === "'") {
      const end = source.indexOf("'", i + 1);
      text += source.slice(i, end + 1);
      i = end;
    } else if (ch === '?') {
      text += `$${++n}`;
    } else if (ch === '@' && /[a-z_]/i.test(source[i + 1] ?? '')) {
      named = true;
      const name = /^[a-z_][a-z0-9_]*/i.exec(source.slice(i + 1))![0];
      let index = byName.get(name);
      if (index === undefined) {
        index = ++n;
        byName.set(name, index);
        names.push(name);
      }
      text += `$${index}`;
      i += name.length;
    } else {
      text += ch;
    }
  }
  text = text.replace(/\bIS (\$\d+)/g, 'IS NOT DISTINCT FROM $1');
  return named ? { text, names } : { text };
}

class PgStatement implements SqlStatement {
  private plucked = false;
  constructor(
    private readonly driver: PgDriver,
    private readonly sql: Translated,
  ) {}

  private values(params: unknown[]): unknown[] {
    if (!this.sql.names) return params;
    const obj = (params[0] ?? {}) as Record<string, unknown>;
    return this.sql.names.map((n) => obj[n] ?? null);
  }

  private rows(params: unknown[]): unknown[] {
    const rows = this.driver.query(this.sql.text, this.values(params)).rows;
    return this.plucked ? rows.map((r) => Object.values(r)[0]) : rows;
  }

  get(...params: unknown[]): unknown {
    return this.rows(params)[0];
  }

  all(...params: unknown[]): unknown[] {
    return this.rows(params);
  }

  run(...params: unknown[]): { changes: number } {
    return { changes: this.driver.query(this.sql.text, this.values(params)).rowCount };
  }

  pluck(toggle = true): this {
    this.plucked = toggle;
    return this;
  }
}

export class PgDriver implements SqlDriver {
  private depth = 0;
  /** Connection generation at BEGIN; undefined outside a transaction. */
  private txGen: number | undefined;
  private readonly cache = new Map<string, Translated>();

  constructor(readonly pg: SyncPg) {}

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  query(text: string, params: readonly unknown[] = []) {
    const answer = this.pg.query(text, params);
    if (this.txGen !== undefined && answer.gen !== this.txGen) throw unreachable();
    return answer;
  }

  prepare(source: string): SqlStatement {
    let t = this.cache.get(source);
    if (!t) {
      t = translate(source);
      this.cache.set(source, t);
    }
    return new PgStatement(this, t);
  }

  transaction<T>(fn: () => T): () => T {
    return () => {
      const outer = this.depth === 0;
      const savepoint = `sp${this.depth}`;
      if (outer) {
        this.txGen = this.pg.query('BEGIN').gen;
      } else {
        this.query(`SAVEPOINT ${savepoint}`);
      }
      this.depth++;
      let result: T;
      try {
        result = fn();
        if (result instanceof Promise) throw new TypeError('Transaction function cannot return a promise');
      } catch (e) {
        this.depth--;
        this.rollback(outer, savepoint);
        throw translateError(e);
      }
      this.depth--;
      try {
        this.query(outer ? 'COMMIT' : `RELEASE SAVEPOINT ${savepoint}`);
      } catch (e) {
        // A COMMIT that failed or went unanswered: the outcome is unknown to us, not to the server.
        if (outer) this.end(true);
        throw translateError(e);
      } finally {
        if (outer) this.txGen = undefined;
      }
      return result;
    };
  }

  private rollback(outer: boolean, savepoint: string): void {
    try {
      this.query(outer ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT ${savepoint}`);
      if (outer) this.txGen = undefined;
    } catch {
      this.end(outer);
    }
  }

  /** Leaves a transaction whose connection is gone or unusable: the server rolls it back. */
  private end(outer: boolean): void {
    if (outer) this.txGen = undefined;
    this.pg.reset();
  }

  close(): void {
    this.pg.close();
  }
}

/** Errors from the server that the store's callers know how to handle; others stay as they are. */
function translateError(e: unknown): unknown {
  if (e instanceof PgError && e.code === '40P01') return Errors.throttling('The request conflicted with a concurrent change; try again.');
  return e;
}
