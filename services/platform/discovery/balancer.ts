import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceDirectory } from "./registry.js";
import { callersDoingKey } from "../rpc-client/resilience.js";
import { isPeerRefused } from "../trust/mesh-tls.js";

export interface InstanceTransport {
  transport: Transport;
  close(): void;
}

/** Consecutive failures that take an instance out of rotation, and for how long. */
const EJECT_AFTER_FAILURES = 2;
const EJECT_FOR_MS = 10_000;
/** How long an address whose server is not the service (the wrong identity, a foreign CA) stays out. */
const IMPOSTOR_EJECT_MS = 5 * 60_000;

/**
 * Client-side load balancing over the instances the directory knows: round robin, skipping
 * instances that keep failing until their ejection lapses. It is the innermost interceptor,
 * so each retry of the resilience stack picks afresh and lands on another instance. With no
 * instance known it falls through to the client's static address (config, or DNS).
 *
 * Failures eject at most half of the instances (rounded down), as Envoy's
 * max_ejection_percent caps outlier detection: when every instance fails at once the fault
 * is more likely shared (overload, a dependency of theirs, our own network) than in each
 * of them, and ejecting them all would leave the traffic on the survivors, or on none. The
 * last instance is never ejected for failures. An impostor (an address whose server is not
 * the service) is outside the cap: it is no instance of the service, so it neither counts
 * towards the cap nor is let back in because of it.
 */
export function createBalancer(service: DescService, directory: ServiceDirectory, connect: (baseUrl: string) => InstanceTransport) {
  const transports = new Map<string, InstanceTransport>();
  const failures = new Map<string, { count: number; ejectedUntil: number; impostor: boolean }>();
  let live: string[] = [];
  const ejected = (address: string, now: number) => (failures.get(address)?.ejectedUntil ?? 0) > now;
  const isImpostor = (address: string, now: number) => ejected(address, now) && failures.get(address)!.impostor;
  let turn = 0;

  function pick(): string | undefined {
    const now = Date.now();
    live = directory.instances(service.typeName).map((instance) => instance.address);
    for (const [address, target] of transports) {
      if (live.includes(address)) continue;
      target.close(); // the instance left the registry: drop its connection
      transports.delete(address);
      failures.delete(address);
    }
    const instances = live.filter((address) => !isImpostor(address, now)).sort();
    // Every instance out for failures (the others left the registry since): none is ejected, then.
    const healthy = instances.filter((address) => !ejected(address, now));
    const candidates = healthy.length > 0 ? healthy : instances;
    return candidates.length === 0 ? undefined : candidates[turn++ % candidates.length];
  }

  function record(address: string, err?: unknown): void {
    const code = err === undefined ? undefined : ConnectError.from(err).code;
    // Refused, or hanging: either way the instance is not serving.
    if (code !== Code.Unavailable && code !== Code.DeadlineExceeded && code !== Code.Canceled) {
      failures.delete(address);
      return;
    }
    const now = Date.now();
    const state = failures.get(address) ?? { count: 0, ejectedUntil: 0, impostor: false };
    failures.set(address, state);
    state.count++;
    // Not the service at all (a poisoned or stale entry): out at once, and for longer.
    if (isPeerRefused(err)) {
      Object.assign(state, { ejectedUntil: now + IMPOSTOR_EJECT_MS, impostor: true });
      return;
    }
    if (state.count < EJECT_AFTER_FAILURES || ejected(address, now)) return;
    const instances = live.filter((other) => !isImpostor(other, now));
    const out = instances.filter((other) => ejected(other, now)).length;
    if (out + 1 <= Math.floor(instances.length / 2)) Object.assign(state, { ejectedUntil: now + EJECT_FOR_MS, impostor: false });
  }

  const interceptor: Interceptor = (next) => async (req) => {
    const address = pick();
    if (!address) return next(req);
    let target = transports.get(address);
    if (!target) transports.set(address, (target = connect(address)));
    try {
      // The outer interceptors already put the deadline and trace context in the headers.
      const response = req.stream
        ? await target.transport.stream(req.method, req.signal, undefined, req.header, req.message, req.contextValues)
        : await target.transport.unary(req.method, req.signal, undefined, req.header, req.message, req.contextValues);
      record(address);
      return response as never;
    } catch (err) {
      // A failure the caller brought on itself (its cancellation, its deadline) says nothing
      // about the instance.
      if (!req.contextValues.get(callersDoingKey)(err)) record(address, err);
      throw err;
    }
  };

  return {
    interceptor,
    close() {
      for (const target of transports.values()) target.close();
    },
  };
}
