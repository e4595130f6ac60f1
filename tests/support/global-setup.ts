import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startLocalPostgres } from "../../services/platform/dev/local-postgres.js";
import { startLocalNats } from "../../services/platform/dev/local-nats.js";
import { freePort } from "../../services/platform/dev/tcp.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL of the test cluster's `meshwork` database; suites create their own. */
    postgresUrl: string;
    natsUrl: string;
  }
}

/**
 * One real Postgres and one real nats-server per test run, on free ports in a scratch
 * directory, so tests never touch a developer's data or the machine's own services.
 */
export default async function setup(project: TestProject) {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-test-"));
  const postgres = await startLocalPostgres({ dataDir: join(scratch, "postgres"), port: await freePort() });
  const nats = await startLocalNats({ port: await freePort(), storeDir: join(scratch, "nats") });
  project.provide("postgresUrl", postgres.url);
  project.provide("natsUrl", nats.url);
  return async () => {
    await nats.stop();
    await postgres.stop();
    rmSync(scratch, { recursive: true, force: true });
  };
}
