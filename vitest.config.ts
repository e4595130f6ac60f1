import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["services/**/*.test.ts", "gateway/**/*.test.ts", "tools/**/*.test.ts", "tests/**/*.test.ts", "legacy/**/*.test.ts"],
    globalSetup: ["tests/support/global-setup.ts"],
    // Suites start real servers and processes; two cores are shared by all of them.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
  },
});
