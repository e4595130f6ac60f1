import { randomUUID } from "node:crypto";
import { Kvm, type KV } from "@nats-io/kv";
import type { Logger } from "../logger.js";
import type { BusConnection } from "./connection.js";

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

/**
 * Follows the registry bucket and answers which instances of a service are live: announced
 * as SERVING, and renewed within the TTL (an expired entry leaves no delete marker, so age
 * is checked here too).
 */
export function createServiceDirectory(options: { bus: BusConnection; ttlMs?: number; logger: Logger }): ServiceDirectory {
  const ttlMs = options.ttlMs ?? 15_000;
  const known = new Map<string, Instance>();
  let stopped = false;
  let stopWatch: (() => void) | undefined;
  const follow = async () => {
    while (!stopped) {
      try {
        const kv = await openBucket(options.bus, ttlMs);
        const watch = await kv.watch();
        stopWatch = () => watch.stop();
        for await (const entry of watch) {
          if (entry.operation === "PUT") known.set(entry.key, JSON.parse(entry.string()) as Instance);
          else known.delete(entry.key);
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
      return [...known.values()].filter((i) => i.service === service && i.health === "SERVING" && now - i.updatedAt < ttlMs);
    },
    stop() {
      stopped = true;
      stopWatch?.();
    },
  };
}
