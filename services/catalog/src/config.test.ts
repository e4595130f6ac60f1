import { describe, expect, it } from "vitest";
import { ConfigError } from "#platform";
import { loadConfig } from "./config.js";

const base = { NATS_URL: "nats://127.0.0.1:4222", DATABASE_URL: "postgres://catalog@127.0.0.1/meshwork", MESH_TLS: "off", TRUSTED_PROXIES: "127.0.0.1" };

describe("catalog's configuration", () => {
  it("needs OLDSHOP_CDC_URL, and defaults the slot and the publication", () => {
    expect(() => loadConfig(base)).toThrow(new ConfigError("OLDSHOP_CDC_URL is required but not set"));
    expect(loadConfig({ ...base, OLDSHOP_CDC_URL: "postgres://catalog_cdc@127.0.0.1:54330/meshwork" })).toMatchObject({
      cdcSourceUrl: "postgres://catalog_cdc@127.0.0.1:54330/meshwork",
      cdcSlot: "catalog_from_oldshop",
      cdcPublication: "oldshop_catalog",
    });
  });

  it("takes only plain identifiers for the slot and the publication, which go into replication commands", () => {
    const env = { ...base, OLDSHOP_CDC_URL: "postgres://catalog_cdc@127.0.0.1/meshwork" };
    expect(loadConfig({ ...env, CDC_SLOT: "blue_2", CDC_PUBLICATION: "shop_pub" })).toMatchObject({ cdcSlot: "blue_2", cdcPublication: "shop_pub" });
    expect(() => loadConfig({ ...env, CDC_SLOT: "x; DROP" })).toThrow(/CDC_SLOT must be 1 to 63 of a-z, 0-9 and _/);
    expect(() => loadConfig({ ...env, CDC_PUBLICATION: "Oldshop" })).toThrow(/CDC_PUBLICATION must be/);
  });
});
