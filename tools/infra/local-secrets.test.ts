import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { localSecret } from "./local-secrets.js";

describe("localSecret", () => {
  const dir = join(mkdtempSync(join(tmpdir(), "meshwork-secrets-")), "secrets");
  afterAll(() => rmSync(join(dir, ".."), { recursive: true, force: true }));

  it("keeps a secret per name, 0600 in a 0700 directory, the same on every call", () => {
    // A role name with an underscore (the old shop's capture role, catalog_cdc) names a secret too.
    const first = localSecret(dir, "catalog_cdc.postgres");
    expect(first).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(localSecret(dir, "catalog_cdc.postgres")).toBe(first);
    expect(localSecret(dir, "oldshop.postgres")).not.toBe(first);
    expect(statSync(join(dir, "catalog_cdc.postgres")).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it("refuses a name that could leave the directory or hide", () => {
    for (const name of ["../gateway.auth", "a/b", ".hidden", "", "UPPER"]) expect(() => localSecret(dir, name)).toThrow(/is not a secret name/);
  });
});
