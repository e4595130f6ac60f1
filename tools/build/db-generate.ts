/**
 * `npm run db:generate -- <service> <migration-name>`: writes a drizzle-kit migration for a
 * service's schema. The migrator keeps its journal inside the service's own schema and so
 * creates that schema first; the first migration's CREATE SCHEMA therefore needs
 * IF NOT EXISTS, which this adds.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const [service, name] = process.argv.slice(2);
if (!service || !name) {
  console.error("usage: npm run db:generate -- <service> <migration-name>");
  process.exit(2);
}
const root = resolve(import.meta.dirname, "../..");
execFileSync(join(root, "node_modules/.bin/drizzle-kit"), ["generate", "--config", `services/${service}/drizzle.config.ts`, "--name", name], {
  cwd: root,
  stdio: "inherit",
});
const folder = join(root, "services", service, "migrations");
for (const file of readdirSync(folder).filter((f) => f.endsWith(".sql"))) {
  const path = join(folder, file);
  const sql = readFileSync(path, "utf8");
  const fixed = sql.replace(/^CREATE SCHEMA "([^"]+)";/m, '-- IF NOT EXISTS: the migrator creates the schema first to hold its journal.\nCREATE SCHEMA IF NOT EXISTS "$1";');
  if (fixed !== sql) writeFileSync(path, fixed);
}
