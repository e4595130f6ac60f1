import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startLocalPostgres } from "#tools/infra/local-postgres.js";
import { freePort } from "#tools/infra/tcp.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL (password included) of the test cluster's `meshwork` database; suites create their own. */
    postgresUrl: string;
  }
}

/**
 * One real Postgres per test run, on a free port in a scratch directory, so tests never
 * touch a developer's data or the machine's own services. Suites start their own
 * nats-server (tests/support/nats.ts), which they may kill.
 *
 * Its cluster runs with durability off (`durable: false`), as only the suite's throwaway
 * clusters may: it is deleted after the run. Everything else, the scratch meshes that
 * suites start included, runs Postgres durable.
 */
export default async function setup(project: TestProject) {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-test-"));
  const postgres = await startLocalPostgres({
    dataDir: join(scratch, "postgres"),
    port: await freePort(),
    superuserPassword: randomBytes(18).toString("base64url"),
    durable: false,
  });
  project.provide("postgresUrl", postgres.url);
  return async () => {
    await postgres.stop();
    rmSync(scratch, { recursive: true, force: true });
  };
}
