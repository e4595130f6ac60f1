import { BlockList, isIP } from "node:net";
import type { Interceptor } from "@connectrpc/connect";
import { clientAddressKey } from "./node-handler.js";

/** "::ffff:10.0.0.1", as a dual-stack socket reports an IPv4 peer, is the IPv4 address 10.0.0.1. */
export function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The address in one X-Forwarded-For hop. Some load balancers append the port
 * ("203.0.113.7:51234", "[2001:db8::7]:443"), or bracket IPv6 without one; a hop read as
 * malformed would merge every client behind the proxy into the proxy's own address.
 */
function addressOfHop(hop: string): string {
  const trimmed = hop.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(trimmed);
  if (bracketed) return bracketed[1]!;
  const withPort = /^([^:]+):\d+$/.exec(trimmed);
  return withPort && isIP(withPort[1]!) === 4 ? withPort[1]! : trimmed;
}

/** Whether `entry` is an IP address or a CIDR subnet such as 10.0.0.0/8 or fd00::/8. */
export function isAddressOrSubnet(entry: string): boolean {
  const [address = "", prefix, ...rest] = entry.split("/");
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  const bits = Number(prefix);
  return /^\d+$/.test(prefix) && bits <= (family === 4 ? 32 : 128);
}

/** The proxies and ingresses whose X-Forwarded-For is believed. */
export interface TrustedProxies {
  readonly empty: boolean;
  has(address: string): boolean;
}

/** Addresses and CIDR subnets; an entry that is neither throws, naming it. */
export function createTrustedProxies(entries: readonly string[]): TrustedProxies {
  const list = new BlockList();
  for (const entry of entries) {
    if (!isAddressOrSubnet(entry)) throw new Error(`"${entry}" is neither an IP address nor a CIDR subnet`);
    const [address = "", prefix] = entry.split("/");
    const family = isIP(address) === 4 ? "ipv4" : "ipv6";
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(prefix), family);
  }
  return {
    empty: entries.length === 0,
    has(address) {
      const normalized = normalizeAddress(address);
      const family = isIP(normalized);
      return family !== 0 && list.check(normalized, family === 4 ? "ipv4" : "ipv6");
    },
  };
}

/**
 * The client behind the proxies: X-Forwarded-For read from the right, skipping hops that are
 * trusted proxies; the first untrusted hop was appended by a trusted proxy, so it is the
 * client as that proxy saw it. Anything further left was written by the client and is never
 * read. A peer that is not a trusted proxy is the client itself, whatever header it sent.
 */
export function resolveClientAddress(peer: string, forwardedFor: string | null | undefined, trusted: TrustedProxies): string {
  let client = normalizeAddress(peer);
  if (!forwardedFor || !trusted.has(client)) return client;
  const hops = forwardedFor.split(",");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalizeAddress(addressOfHop(hops[i]!));
    // A malformed hop cannot be a client address: the last proxy that forwarded it is.
    if (isIP(hop) === 0) return client;
    client = hop;
    if (!trusted.has(hop)) return hop;
  }
  return client; // every hop a trusted proxy: the leftmost is the closest to the client
}

/**
 * Replaces the call's client address (the TCP peer, set by the node handler) with the
 * client behind trusted proxies, for the per-address limits that follow it.
 */
export function createClientAddressInterceptor(trusted: TrustedProxies): Interceptor {
  return (next) => (req) => {
    const peer = req.contextValues.get(clientAddressKey);
    req.contextValues.set(clientAddressKey, resolveClientAddress(peer, req.header.get("x-forwarded-for"), trusted));
    return next(req);
  };
}
