import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startLocalPostgres } from "#tools/infra/local-postgres.js";
import { freePort } from "#tools/infra/tcp.js";

/**
 * The old shop's side of change capture, for the catalog's tests: a throwaway cluster with
 * wal_level=logical, and per test a database holding the legacy table (section 1's SQL), its
 * publication and the catalog_cdc role's rights, as the mesh's provisioning grants them.
 * (Until tests/support/legacy-databases.ts provides the same on the run's shared cluster.)
 */
export interface OldShopSource {
  /** A fresh database: the superuser's URL, for writing legacy rows, and catalog_cdc's, for the reader. */
  createDatabase(): Promise<{ adminUrl: string; cdcUrl: string }>;
  stop(): Promise<void>;
}

const CDC_ROLE = "catalog_cdc";
const PUBLICATION = "oldshop_catalog";

export const oldShopSchemaSql = `
  create schema oldshop;
  create table oldshop.products (
    sku text primary key,
    title text not null,
    blurb text not null default '',
    price numeric(12,2) not null,
    currency char(3) not null,
    updated_at timestamptz not null default now()
  );
  grant usage on schema oldshop to ${CDC_ROLE};
  grant select on oldshop.products to ${CDC_ROLE};
  create publication ${PUBLICATION} for table oldshop.products;
`;

export async function startOldShopSource(): Promise<OldShopSource> {
  const scratch = mkdtempSync(join(tmpdir(), "catalog-source-"));
  const cluster = await startLocalPostgres({
    dataDir: join(scratch, "postgres"),
    port: await freePort(),
    superuserPassword: randomBytes(18).toString("base64url"),
    durable: false,
    settings: { wal_level: "logical", max_replication_slots: "20", max_wal_senders: "20" },
  });
  const cdcPassword = randomBytes(18).toString("base64url");
  const admin = postgres(cluster.url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create role ${CDC_ROLE} login replication password '${cdcPassword}'`);
  const urlOf = (database: string, user?: { name: string; password: string }) => {
    const url = new URL(cluster.url);
    url.pathname = `/${database}`;
    if (user) {
      url.username = user.name;
      url.password = user.password;
    }
    return url.toString();
  };
  return {
    async createDatabase() {
      const name = `s_${randomBytes(6).toString("hex")}`;
      await admin.unsafe(`create database ${name}`);
      const adminUrl = urlOf(name);
      const db = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await db.unsafe(oldShopSchemaSql);
      } finally {
        await db.end();
      }
      return { adminUrl, cdcUrl: urlOf(name, { name: CDC_ROLE, password: cdcPassword }) };
    },
    async stop() {
      await admin.end();
      await cluster.stop();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
