import postgres from "postgres";
import { createLegacyDatabase } from "#tests/support/legacy-databases.js";
import { productsTableSql } from "../../../../legacy/oldshop/src/schema.js";

/**
 * The old shop's side of change capture for the catalog's tests: a fresh database on the
 * run's logical-replication cluster, provisioned as `npm start` provisions it, with the old
 * shop's table created by its own role (so catalog_cdc's default privileges cover it), empty.
 * Returns the superuser's URL, for writing legacy rows and inspecting the slot, and catalog_cdc's.
 */
export async function createOldShopSource(): Promise<{ adminUrl: string; cdcUrl: string }> {
  const { adminUrl, oldshopUrl, cdcUrl } = await createLegacyDatabase();
  const app = postgres(oldshopUrl, { max: 1, onnotice: () => {} });
  try {
    await app.unsafe(productsTableSql);
  } finally {
    await app.end();
  }
  return { adminUrl, cdcUrl };
}
