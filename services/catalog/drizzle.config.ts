import { defineConfig } from "drizzle-kit";

// Used only by `drizzle-kit generate` to write SQL migrations; never at run time.
export default defineConfig({
  dialect: "postgresql",
  schema: "./services/catalog/src/db/schema.ts",
  out: "./services/catalog/migrations",
  schemaFilter: ["catalog"],
});
