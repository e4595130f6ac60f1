import { describe, expect, it } from "vitest";
import { childEnv, withOwnCredentials, type MeshService } from "#tools/mesh/topology.js";
import { meshDeployables } from "#mesh";

/**
 * Least privilege in what the launchers hand out: each process gets its own certificate,
 * NATS user and Postgres role, and nothing of another's, nor the CA's key, nor the admin
 * URL the shell that started the mesh may hold.
 */
describe("every process gets only its own credentials", () => {
  const services: MeshService[] = meshDeployables.map((d, i) => ({ name: d.name, main: d.main, port: 40_000 + i, opsPort: 41_000 + i }));
  const secret = (name: string, kind: string) => `${kind}-secret-of-${name}`;
  const own = withOwnCredentials(services, {
    databaseUrl: (name) => (name === "gateway" ? undefined : `postgres://${name}:${secret(name, "pg")}@db/meshwork`),
    natsUrl: (name) => `nats://${name}:${secret(name, "nats")}@nats:4222`,
    tls: (name) => ({ certFile: `/pki/${name}.crt`, keyFile: `/pki/${name}.key`, caFile: "/pki/ca.crt" }),
    gatewayAuthSecret: "gateway-signing-key",
    captureEnv: (name): Record<string, string> => (name === "catalog" ? { OLDSHOP_CDC_URL: `postgres://catalog_cdc:${secret(name, "pg-cdc")}@legacy-db/meshwork` } : {}),
  });
  const shared = childEnv({ DATABASE_URL: "postgres://postgres:admin@db/meshwork", OLDSHOP_DATABASE_URL: "postgres://postgres:admin@legacy-db/meshwork", NATS_URL: "nats://admin@x", TLS_KEY_FILE: "/pki/ca.key", AUTH_LOCAL_SECRET: "x", PATH: "/bin" }, own);

  it("shares no credential: the shell's admin URL, NATS user and key files are dropped", () => {
    expect(shared["DATABASE_URL"]).toBeUndefined();
    expect(shared["OLDSHOP_DATABASE_URL"]).toBeUndefined();
    expect(shared["OLDSHOP_URL"]).toMatch(/^https:\/\//);
    expect(shared["NATS_URL"]).toBeUndefined();
    expect(shared["TLS_KEY_FILE"]).toBeUndefined();
    expect(shared["AUTH_LOCAL_SECRET"]).toBeUndefined();
    expect(shared["PATH"]).toBe("/bin");
    expect(shared["PAYMENT_URL"]).toMatch(/^https:\/\//);
  });

  it.each(own.map((service) => [service.name, service] as const))("%s holds its own and no one else's", (name, service) => {
    const env = { ...shared, ...service.env };
    const everything = JSON.stringify(env);
    for (const other of services.filter((s) => s.name !== name)) {
      expect(everything).not.toContain(secret(other.name, "pg"));
      expect(everything).not.toContain(secret(other.name, "nats"));
      expect(everything).not.toContain(secret(other.name, "pg-cdc"));
      expect(everything).not.toContain(`/pki/${other.name}.key`);
    }
    expect(everything).not.toContain("ca.key");
    // The old shop, a legacy app, uses no NATS and gets no user.
    expect(env["NATS_URL"]).toBe(name === "oldshop" ? undefined : `nats://${name}:${secret(name, "nats")}@nats:4222`);
    expect(env["OLDSHOP_CDC_URL"]).toBe(name === "catalog" ? `postgres://catalog_cdc:${secret(name, "pg-cdc")}@legacy-db/meshwork` : undefined);
    expect(env["TLS_KEY_FILE"]).toBe(`/pki/${name}.key`);
    expect(env["OPS_PORT"]).toBe(String(service.opsPort));
    if (name === "gateway") {
      expect(env["DATABASE_URL"]).toBeUndefined();
      expect(env["AUTH_LOCAL_SECRET"]).toBe("gateway-signing-key");
    } else {
      expect(env["DATABASE_URL"]).toContain(`//${name}:`);
      expect(env["AUTH_LOCAL_SECRET"]).toBeUndefined();
    }
  });
});
