import type { ExecFileSyncOptions } from 'node:child_process';

export const PG_BIN: string;
export const PG_PORT: number;

export function pgRun(cmd: string, args: string[], opts?: ExecFileSyncOptions): string;

export interface PgClient {
  url(database: string): string;
  /** Creates the database (no-op if it exists) and returns its URL. */
  createDatabase(name: string): string;
  psql(database: string, sql: string): string;
}

export interface PgCluster extends PgClient {
  dir: string;
  socketDir: string;
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  /** Stops the cluster (immediate) and removes its directory. */
  destroy(): void;
}

export function pgClient(socketDir: string): PgClient;
export function startPgCluster(): PgCluster;
