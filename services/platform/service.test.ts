import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { startService, type ServiceRuntime } from "./service.js";

describe("a service's identity", () => {
  it("refuses a logger that names another service, before it opens anything", async () => {
    // Nothing listens at these addresses: the check must come first for the call to fail this way.
    const runtime = { logger: pino({ level: "silent", base: { service: "orders" } }), databaseUrl: "postgres://127.0.0.1:1/none", natsUrl: "nats://127.0.0.1:1" } as ServiceRuntime;
    const definition = { name: "order", schemaName: "orders", tables: {}, migrationsFolder: "/nonexistent", services: [], setup: () => Promise.reject(new Error("not reached")) };
    await expect(startService(runtime, definition)).rejects.toThrow('the logger is service "orders"\'s, but this is "order"');
  });
});
