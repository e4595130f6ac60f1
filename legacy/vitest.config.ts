import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

/**
 * The old shop's tests on their own (npx vitest run --config legacy/vitest.config.ts), with the
 * repository's global setup (its test Postgres clusters).
 */
export default defineConfig({
  root: resolve(import.meta.dirname, ".."),
  test: {
    include: ["legacy/**/*.test.ts"],
    globalSetup: ["tests/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
  },
});
