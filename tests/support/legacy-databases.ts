import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { inject } from "vitest";
import { deployable } from "#mesh";
import { provisionLegacyDatabase } from "#tools/infra/legacy-database.js";
// The provided URL's type, for programs (legacy/'s tsconfig) that do not hold the global setup.
import type {} from "./global-setup.js";

/** Fixed, since roles belong to the whole legacy test cluster and every suite's databases share them. */
export const testLegacyPasswords = { app: "test-oldshop-role", capture: "test-catalog-cdc-role" };

export interface LegacyDatabase {
  /** The superuser's URL of the fresh database. */
  adminUrl: string;
  /** The old shop's own role. */
  oldshopUrl: string;
  /** The catalog's change capture role (catalog_cdc): replication and SELECT on oldshop's tables. */
  cdcUrl: string;
  /**
   * The replication slot the catalog capturing this database must use (its CDC_SLOT). Slot
   * names are cluster-wide, not per database, so suites sharing the cluster each need their own.
   */
  slot: string;
}

/**
 * A fresh database on the run's legacy cluster (logical replication on), provisioned as
 * `npm start` provisions the old shop's: its role owning schema oldshop, catalog_cdc, and the
 * publication oldshop_catalog for the schema's tables. The table itself is the old shop's to
 * create (startOldShop, or its exported productsTableSql). The slot named for it goes with
 * the cluster at the end of the run (the cluster allows 100).
 */
export async function createLegacyDatabase(): Promise<LegacyDatabase> {
  const clusterUrl = inject("legacyPostgresUrl");
  const name = `l_${randomBytes(6).toString("hex")}`;
  const admin = postgres(clusterUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(clusterUrl);
  url.pathname = `/${name}`;
  const adminUrl = url.toString();
  const { appUrl, captureUrl } = await provisionLegacyDatabase(adminUrl, deployable("oldshop"), testLegacyPasswords);
  return { adminUrl, oldshopUrl: appUrl, cdcUrl: captureUrl, slot: `catalog_${name}` };
}
