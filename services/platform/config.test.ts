import { describe, expect, it } from "vitest";
import { ConfigError, integer, oneOf, port, serviceConfig, url } from "./config.js";

describe("config readers", () => {
  it("fails fast naming the variable", () => {
    expect(() => serviceConfig({})).toThrow(new ConfigError("DATABASE_URL is required but not set"));
    expect(() => port({ ORDER_PORT: "http" }, "ORDER_PORT", 1)).toThrow('ORDER_PORT must be an integer from 0 to 65535, got "http"');
    expect(() => url({ INVENTORY_URL: "not a url" }, "INVENTORY_URL")).toThrow('INVENTORY_URL must be a URL, got "not a url"');
    expect(() => oneOf({ LOG_LEVEL: "loud" }, "LOG_LEVEL", ["info", "debug"], "info")).toThrow('LOG_LEVEL must be one of info, debug, got "loud"');
  });

  it("uses defaults for unset and blank values", () => {
    expect(integer({ N: "  " }, "N", 7, { min: 0, max: 10 })).toBe(7);
    const config = serviceConfig({ DATABASE_URL: "postgres://localhost/x" });
    expect(config).toEqual({ databaseUrl: "postgres://localhost/x", natsUrl: "nats://127.0.0.1:4222", streamReplicas: 1, host: "127.0.0.1", logLevel: "info", maxRequestBytes: 1048576, shutdownGraceMs: 10000, otlpEndpoint: undefined, advertiseUrl: undefined, version: "dev" });
  });
});
