import { describe, expect, it } from "vitest";
import { addressList, ConfigError, connectionLimits, integer, oneOf, port, serviceConfig, url } from "./config.js";
import { defaultConnectionLimits } from "../rpc-server/connection-limits.js";
import { defaultRetention } from "../data/retention.js";

describe("config readers", () => {
  it("fails fast naming the variable", () => {
    expect(() => serviceConfig({ TLS_CERT_FILE: "c", TLS_KEY_FILE: "k", TLS_CA_FILE: "a" })).toThrow(new ConfigError("NATS_URL is required but not set"));
    expect(() => serviceConfig({ NATS_URL: "nats://order:pw@nats:4222", TLS_CERT_FILE: "c", TLS_KEY_FILE: "k", TLS_CA_FILE: "a" })).toThrow(new ConfigError("DATABASE_URL is required but not set"));
    expect(() => port({ ORDER_PORT: "http" }, "ORDER_PORT", 1)).toThrow('ORDER_PORT must be an integer from 0 to 65535, got "http"');
    expect(() => url({ INVENTORY_URL: "not a url" }, "INVENTORY_URL")).toThrow('INVENTORY_URL must be a URL, got "not a url"');
    expect(() => oneOf({ LOG_LEVEL: "loud" }, "LOG_LEVEL", ["info", "debug"], "info")).toThrow('LOG_LEVEL must be one of info, debug, got "loud"');
  });

  it("uses defaults for unset and blank values", () => {
    expect(integer({ N: "  " }, "N", 7, { min: 0, max: 10 })).toBe(7);
    // No broker, database or certificate is assumed: a service is told its own.
    const config = serviceConfig({ DATABASE_URL: "postgres://localhost/x", NATS_URL: "nats://order:pw@nats:4222", TLS_CERT_FILE: "c", TLS_KEY_FILE: "k", TLS_CA_FILE: "a" });
    expect(config).toEqual({
      databaseUrl: "postgres://localhost/x",
      natsUrl: "nats://order:pw@nats:4222",
      streamReplicas: 1,
      host: "127.0.0.1",
      logLevel: "info",
      maxRequestBytes: 1048576,
      shutdownGraceMs: 10000,
      otlpEndpoint: undefined,
      advertiseUrl: undefined,
      version: "dev",
      connectionLimits: defaultConnectionLimits,
      trustedProxies: [],
      opsPort: 0,
      meshTls: { certFile: "c", keyFile: "k", caFile: "a" },
      retention: defaultRetention,
    });
  });

  it("reads connection limits and trusted proxies, refusing what cannot work", () => {
    expect(connectionLimits({ HEADERS_TIMEOUT_MS: "2000", MAX_CONNECTIONS_PER_ADDRESS: "8" })).toMatchObject({ headersTimeoutMs: 2000, maxConnectionsPerAddress: 8 });
    expect(() => connectionLimits({ HEADERS_TIMEOUT_MS: "40000", REQUEST_TIMEOUT_MS: "30000" })).toThrow("HEADERS_TIMEOUT_MS (40000) must not exceed REQUEST_TIMEOUT_MS (30000)");
    expect(() => connectionLimits({ IDLE_TIMEOUT_MS: "0" })).toThrow('IDLE_TIMEOUT_MS must be an integer from 100 to 3600000, got "0"');
    expect(addressList({ TRUSTED_PROXIES: " 10.0.0.1, 10.1.0.0/16,fd00::/8 " }, "TRUSTED_PROXIES")).toEqual(["10.0.0.1", "10.1.0.0/16", "fd00::/8"]);
    expect(() => addressList({ TRUSTED_PROXIES: "10.0.0.1,ingress" }, "TRUSTED_PROXIES")).toThrow('TRUSTED_PROXIES must list IP addresses or CIDR subnets, got "ingress"');
    expect(() => addressList({ TRUSTED_PROXIES: "10.0.0.0/33" }, "TRUSTED_PROXIES")).toThrow('got "10.0.0.0/33"');
  });
});
