import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { inject } from "vitest";
import { withSchema } from "#mesh";
import { provisionMeshDatabases } from "#tools/mesh/mesh-databases.js";

/**
 * A fresh, empty database on the test cluster, so every suite starts from nothing and
 * suites can run in parallel without seeing each other's rows. Returns its superuser URL.
 */
export async function createTestDatabase(): Promise<string> {
  const adminUrl = inject("postgresUrl");
  const name = `t_${randomBytes(6).toString("hex")}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** The deployables with a schema, whose roles (named after them) own it, as the manifest says. */
export type DatabaseService = (typeof withSchema)[number]["name"];
export const serviceSchemas = Object.fromEntries(withSchema.map((d) => [d.name, d.schema])) as Record<DatabaseService, string>;

/**
 * Fixed, since roles belong to the whole test cluster and every suite's databases share
 * them: a password that changed per suite would lock out the suites running alongside.
 */
export const testRolePassword = (service: DatabaseService) => `test-${service}-role`;

/**
 * A fresh database (as {@link createTestDatabase}) with every service's own role
 * provisioned in it, as `npm start` provisions them: the admin URL, and each service's URL.
 */
export async function createServiceDatabases(): Promise<{ adminUrl: string; urls: Record<DatabaseService, string> }> {
  const adminUrl = await createTestDatabase();
  const urlOf = await provisionMeshDatabases(adminUrl, (name) => testRolePassword(name as DatabaseService));
  const urls = Object.fromEntries(withSchema.map(({ name }) => [name, urlOf(name)!]));
  return { adminUrl, urls: urls as Record<DatabaseService, string> };
}

/** A small pool for assertions against a database, closed by the caller. */
export function connect(url: string) {
  return postgres(url, { max: 2, onnotice: () => {} });
}
