import { randomUUID } from "node:crypto";
import { Kvm, type KV } from "@nats-io/kv";
import type { Logger } from "../process/logger.js";
import type { BusConnection } from "../messaging/connection.js";

/** The KV bucket where instances announce themselves. */
export const DISCOVERY_BUCKET = "meshwork_services";

export interface Instance {
  /** The service's protobuf name, e.g. shop.inventory.v1.InventoryService. */
  service: string;
  id: string;
  address: string;
  version: string;
  /** grpc.health.v1 readiness as last announced. */
  health: string;
  updatedAt: number;
}

const openBucket = (bus: BusConnection, ttlMs: number): Promise<KV> => bus.ready.then(({ js }) => new Kvm(js).create(DISCOVERY_BUCKET, { history: 1, ttl: ttlMs }));
const keyOf = (service: string, id: string) => `${service}.${id}`;

/**
 * Announces this instance in the NATS KV bucket, with its address, version and readiness,
 * renewed every third of the TTL. An instance that dies stops renewing and ages out; one
 * that stops cleanly removes itself at once.
 */
export function registerInstance(options: { bus: BusConnection; services: string[]; address: string; version: string; health: () => string; ttlMs?: number; logger: Logger }) {
  const ttlMs = options.ttlMs ?? 15_000;
  const id = randomUUID();
  let stopped = false;
  const announce = async () => {
    const kv = await openBucket(options.bus, ttlMs);
    for (const service of options.services) {
      const instance: Instance = { service, id, address: options.address, version: options.version, health: options.health(), updatedAt: Date.now() };
      await kv.put(keyOf(service, id), JSON.stringify(instance));
    }
  };
  const renew = () => {
    if (!stopped) announce().catch((err: unknown) => options.logger.debug({ err }, "could not renew the service registration"));
  };
  renew();
  const timer = setInterval(renew, ttlMs / 3);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      const kv = await Promise.race([openBucket(options.bus, ttlMs), new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 1_000))]).catch(() => undefined);
      for (const service of options.services) await kv?.delete(keyOf(service, id)).catch(() => {});
    },
  };
}

export interface ServiceDirectory {
  /** Live, ready instances of a service; empty if none are known (callers fall back to static addresses). */
  instances(service: string): Instance[];
  stop(): void;
}

const isText = (value: unknown): value is string => typeof value === "string" && value !== "";

/**
 * The instance a registry entry announces, or why it is not believed. Its key must be
 * `<service>.<id>` of its own fields, with an id of one key token, so an entry written under
 * one service's keys (the only ones its writer's NATS user may write) cannot claim another
 * service; and its address must be an http(s) URL with a host.
 */
function parseRegistryEntry(key: string, value: string): Instance | { rejected: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { rejected: "not JSON" };
  }
  const entry = (typeof parsed === "object" && parsed !== null ? parsed : {}) as Partial<Record<keyof Instance, unknown>>;
  const { service, id, address, version, health, updatedAt } = entry;
  if (!isText(service) || !isText(id) || !isText(address) || typeof version !== "string" || !isText(health)) return { rejected: "missing fields" };
  if (id.includes(".") || key !== keyOf(service, id)) return { rejected: "key is not <service>.<id> of the entry" };
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return { rejected: "address is not a URL" };
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") return { rejected: "address is not an http(s) URL with a host" };
  return { service, id, address, version, health, updatedAt: typeof updatedAt === "number" ? updatedAt : 0 };
}

/**
 * Follows the registry bucket and answers which instances of a service are live: announced
 * as SERVING, and received within the TTL. Age counts from when this process received the
 * entry, never from its `updatedAt`, which its writer chooses: an entry from the future
 * expires like any other unless it is renewed (an expired entry leaves no delete marker, so
 * age is checked here too). An entry that fails `parseRegistryEntry` is ignored, and logged
 * once per key.
 */
export function createServiceDirectory(options: { bus: BusConnection; ttlMs?: number; logger: Logger }): ServiceDirectory {
  const ttlMs = options.ttlMs ?? 15_000;
  const known = new Map<string, { instance: Instance; receivedAt: number }>();
  // Keys whose entry was refused, so a writer renewing a bad entry is logged once; bounded, as anyone may write keys.
  const refused = new Set<string>();
  let stopped = false;
  let stopWatch: (() => void) | undefined;
  const receive = (key: string, value: string) => {
    const instance = parseRegistryEntry(key, value);
    if ("rejected" in instance) {
      known.delete(key);
      if (!refused.has(key)) {
        if (refused.size >= 1_000) refused.clear();
        refused.add(key);
        options.logger.debug({ key: key.slice(0, 200), reason: instance.rejected }, "ignoring a registry entry");
      }
      return;
    }
    refused.delete(key);
    known.set(key, { instance, receivedAt: Date.now() });
  };
  const follow = async () => {
    while (!stopped) {
      try {
        const kv = await openBucket(options.bus, ttlMs);
        const watch = await kv.watch();
        stopWatch = () => watch.stop();
        for await (const entry of watch) {
          if (entry.operation === "PUT") receive(entry.key, entry.string());
          else {
            known.delete(entry.key);
            refused.delete(entry.key);
          }
        }
      } catch (err) {
        if (!stopped) options.logger.debug({ err }, "service directory watch interrupted; resuming");
      }
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  };
  void follow();
  return {
    instances(service) {
      const now = Date.now();
      return [...known.values()].filter(({ instance, receivedAt }) => instance.service === service && instance.health === "SERVING" && now - receivedAt < ttlMs).map(({ instance }) => instance);
    },
    stop() {
      stopped = true;
      stopWatch?.();
    },
  };
}
