import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { inject } from "vitest";

/**
 * A fresh, empty database on the test cluster, so every suite starts from nothing and
 * suites can run in parallel without seeing each other's rows.
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

/** A small pool for assertions against a database, closed by the caller. */
export function connect(url: string) {
  return postgres(url, { max: 2, onnotice: () => {} });
}
