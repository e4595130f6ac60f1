import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startLocalPostgres } from "#tools/infra/local-postgres.js";
import { legacyClusterSettings } from "#tools/infra/legacy-database.js";
import { freePort } from "#tools/infra/tcp.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL (password included) of the test cluster's `meshwork` database; suites create their own. */
    postgresUrl: string;
    /** Superuser URL of the legacy (old shop) test cluster's `meshwork` database, logical replication on; see legacy-databases.ts. */
    legacyPostgresUrl: string;
  }
}

/**
 * One real Postgres per test run, on a free port in a scratch directory, so tests never
 * touch a developer's data or the machine's own services; and one more with logical
 * replication, the old shop's own cluster, as the mesh runs it. Suites start their own
 * nats-server (tests/support/nats.ts), which they may kill.
 *
 * Its clusters run with durability off (`durable: false`), as only the suite's throwaway
 * clusters may: they are deleted after the run. Everything else, the scratch meshes that
 * suites start included, runs Postgres durable.
 */
export default async function setup(project: TestProject) {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-test-"));
  const start = async (dir: string, settings?: Record<string, string>) =>
    startLocalPostgres({ dataDir: join(scratch, dir), port: await freePort(), superuserPassword: randomBytes(18).toString("base64url"), durable: false, ...(settings ? { settings } : {}) });
  // A replication slot per suite database: many suites each create one, so the limits are high.
  const [postgres, legacy] = await Promise.all([start("postgres"), start("oldshop-postgres", { ...legacyClusterSettings, max_replication_slots: "100", max_wal_senders: "100" })]);
  project.provide("postgresUrl", postgres.url);
  project.provide("legacyPostgresUrl", legacy.url);
  return async () => {
    await Promise.all([postgres.stop(), legacy.stop()]);
    rmSync(scratch, { recursive: true, force: true });
  };
}
