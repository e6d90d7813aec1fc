/**
 * The part of better-sqlite3's API that the SQL metadata store uses. SQLite implements it
 * natively; src/store/pg/driver.ts implements it on PostgreSQL, so both stores run the same
 * statements, the same row mapping and the same error paths (one store class, two engines).
 * Statements stay in the common dialect: `?` or `@name` parameters, ON CONFLICT upserts,
 * quoted mixed-case aliases.
 */
export interface SqlStatement {
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number };
  /** Rows become their first column. */
  pluck(toggle?: boolean): this;
}

export interface SqlDriver {
  prepare(source: string): SqlStatement;
  /** better-sqlite3 semantics: returns a function that runs fn in a transaction (a savepoint when nested). */
  transaction<T>(fn: () => T): () => T;
  close(): void;
}
