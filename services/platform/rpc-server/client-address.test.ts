import { describe, expect, it } from "vitest";
import { createTrustedProxies, isAddressOrSubnet, normalizeAddress, resolveClientAddress } from "./client-address.js";

describe("resolveClientAddress", () => {
  const trusted = createTrustedProxies(["10.0.0.1", "10.1.0.0/16", "fd00::/8"]);

  it("ignores X-Forwarded-For from a peer that is not a trusted proxy", () => {
    expect(resolveClientAddress("203.0.113.9", "1.2.3.4", trusted)).toBe("203.0.113.9");
    expect(resolveClientAddress("::ffff:203.0.113.9", "1.2.3.4", trusted)).toBe("203.0.113.9");
  });

  it("reads X-Forwarded-For from the right, skipping trusted hops, never further left", () => {
    expect(resolveClientAddress("10.0.0.1", "1.2.3.4", trusted)).toBe("1.2.3.4");
    // The client wrote "6.6.6.6"; the proxy appended what it saw.
    expect(resolveClientAddress("10.0.0.1", "6.6.6.6, 1.2.3.4", trusted)).toBe("1.2.3.4");
    // Two proxies: the ingress (10.1.2.3, in a trusted subnet) forwarded to 10.0.0.1.
    expect(resolveClientAddress("::ffff:10.0.0.1", "6.6.6.6,1.2.3.4 , 10.1.2.3", trusted)).toBe("1.2.3.4");
    expect(resolveClientAddress("fd00::1", "2001:db8::7", trusted)).toBe("2001:db8::7");
  });

  it("reads hops that carry a port or brackets, as some load balancers write them", () => {
    expect(resolveClientAddress("10.0.0.1", "1.2.3.4:51234", trusted)).toBe("1.2.3.4");
    expect(resolveClientAddress("10.0.0.1", "[2001:db8::7]:443", trusted)).toBe("2001:db8::7");
    expect(resolveClientAddress("10.0.0.1", "6.6.6.6, [2001:db8::8], 10.1.0.9:80", trusted)).toBe("2001:db8::8");
    // An IPv6 address without brackets is not mistaken for one with a port.
    expect(resolveClientAddress("10.0.0.1", "2001:db8::9", trusted)).toBe("2001:db8::9");
  });

  it("stops at a malformed hop, and uses the peer when there is no header", () => {
    expect(resolveClientAddress("10.0.0.1", "1.2.3.4, unknown", trusted)).toBe("10.0.0.1");
    expect(resolveClientAddress("10.0.0.1", "1.2.3.4, not-an-ip, 10.1.0.9", trusted)).toBe("10.1.0.9");
    expect(resolveClientAddress("10.0.0.1", null, trusted)).toBe("10.0.0.1");
    // Every hop trusted: the one furthest from us.
    expect(resolveClientAddress("10.0.0.1", "10.1.0.7, 10.1.0.8", trusted)).toBe("10.1.0.7");
  });

  it("trusts nobody by default", () => {
    const none = createTrustedProxies([]);
    expect(none.empty).toBe(true);
    expect(resolveClientAddress("127.0.0.1", "1.2.3.4", none)).toBe("127.0.0.1");
  });

  it("accepts only addresses and CIDR subnets", () => {
    expect(["10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "0.0.0.0/0"].every(isAddressOrSubnet)).toBe(true);
    expect(["ingress", "10.0.0.0/33", "10.0.0.0/8/1", "10.0.0.0/", "::/129", "10.0.0.1/x"].some(isAddressOrSubnet)).toBe(false);
    expect(() => createTrustedProxies(["10.0.0.1", "proxy.local"])).toThrow('"proxy.local" is neither an IP address nor a CIDR subnet');
    expect(normalizeAddress("::ffff:127.0.0.2")).toBe("127.0.0.2");
    expect(normalizeAddress("::1")).toBe("::1");
  });
});
