import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One process per file: each file initialises PKCS#11 once, against its own temp token.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
