import { defineConfig } from 'vitest/config';

/**
 * The end-to-end files that run a second time on the PostgreSQL store (P11KMS_TEST_STORE=postgres):
 * every family whose metadata lives in the store. Files that only add token work on top of the
 * same store calls (asymmetric, HMAC, ECDH, XKS, protocol, audit chain) run once, on SQLite; the
 * whole suite runs on PostgreSQL with `P11KMS_TEST_STORE=postgres npx vitest run test/e2e`.
 */
const POSTGRES_E2E = [
  'symmetric', 'aliases-tags', 'key-states', 'authz-grants', 'authz-credentials', 'authz-key-policies', 'rotation', 'deletion',
  'import', 'reconcile', 'lifecycle-reconcile', 'asymmetric-reconcile', 'custom-key-stores', 'custom-key-stores-faults',
  'metrics', 'audit-integration', 'key-last-usage', 'multi-region',
].map((f) => `test/e2e/${f}.test.ts`);

export default defineConfig({
  test: {
    // One process per file: each file initialises PKCS#11 once, against its own temp token.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // A real PostgreSQL for the PostgreSQL store and the multi-node tests (test/global-setup.ts).
    globalSetup: ['test/global-setup.ts'],
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'] } },
      { extends: true, test: { name: 'postgres', include: POSTGRES_E2E, env: { P11KMS_TEST_STORE: 'postgres' } } },
    ],
  },
});
