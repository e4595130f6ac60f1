import { describe, expect, it } from "vitest";
import { provisionServiceRoles, scramVerifier, serviceDatabaseUrl } from "./database-roles.js";

describe("serviceDatabaseUrl", () => {
  it("keeps the admin URL's host, port, database and options, with the role's credentials encoded", () => {
    const password = "p@ss:/w%rd?#&= ü";
    const url = new URL(serviceDatabaseUrl("postgres://admin:admin-secret@db.example:5433/meshwork?sslmode=require", "order", password));
    expect([url.hostname, url.port, url.pathname, url.search]).toEqual(["db.example", "5433", "/meshwork", "?sslmode=require"]);
    expect([decodeURIComponent(url.username), decodeURIComponent(url.password)]).toEqual(["order", password]);
  });
});

describe("scramVerifier", () => {
  it("is Postgres's SCRAM-SHA-256 secret format, salted afresh each time", () => {
    const secret = /^SCRAM-SHA-256\$4096:([A-Za-z0-9+/]{22}==)\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/;
    const [first, second] = [scramVerifier("secret"), scramVerifier("secret")];
    expect(first).toMatch(secret);
    expect(first.match(secret)?.[1]).not.toBe(second.match(secret)?.[1]);
  });

  it("refuses passwords that SASLprep could change, and empty ones", () => {
    for (const password of ["", "naïve", "tab\there", "line\nbreak"]) expect(() => scramVerifier(password), JSON.stringify(password)).toThrow(/printable ASCII/);
  });

  it("refuses such a password before it connects anywhere", async () => {
    // Port 1 has nothing listening: a connection attempt would fail differently.
    await expect(provisionServiceRoles("postgres://admin@127.0.0.1:1/db", [{ role: "payment", schema: "payment", password: "naïve" }])).rejects.toThrow(/printable ASCII/);
  });
});
