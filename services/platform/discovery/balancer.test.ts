import { describe, expect, it } from "vitest";
import { Code, ConnectError, createContextValues, type Transport, type UnaryRequest } from "@connectrpc/connect";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import type { Instance, ServiceDirectory } from "./registry.js";
import { createBalancer } from "./balancer.js";

/** How each fake instance answers: it serves, it is down, or it is not the service at all. */
type Behaviour = "serves" | "down" | "impostor";

/** A balancer over fake instances, with each address's answers counted. */
function balancerOver(behaviours: Record<string, Behaviour>) {
  const instances = (): Instance[] =>
    Object.keys(behaviours).map((address) => ({ service: InventoryService.typeName, id: address, address, version: "test", health: "SERVING", updatedAt: Date.now() }));
  const directory: ServiceDirectory = { instances, stop: () => {} };
  const served = new Map<string, number>();
  const transportFor = (address: string): Transport => ({
    unary: async () => {
      served.set(address, (served.get(address) ?? 0) + 1);
      if (behaviours[address] === "down") throw new ConnectError("connection refused", Code.Unavailable);
      if (behaviours[address] === "impostor") {
        throw new ConnectError("refused certificate", Code.Unavailable, undefined, undefined, Object.assign(new Error("self-signed"), { code: "SELF_SIGNED_CERT_IN_CHAIN" }));
      }
      return { stream: false, service: InventoryService, method: InventoryService.method.getStock, header: new Headers(), trailer: new Headers(), message: {} } as never;
    },
    stream: () => Promise.reject(new Error("no streams here")),
  });
  const balancer = createBalancer(InventoryService, directory, (address) => ({ transport: transportFor(address), close: () => {} }));
  const request = () =>
    ({
      stream: false,
      method: InventoryService.method.getStock,
      service: InventoryService,
      signal: new AbortController().signal,
      header: new Headers(),
      message: {},
      contextValues: createContextValues(),
    }) as unknown as UnaryRequest;
  const call = balancer.interceptor(() => Promise.reject(new Error("no fallback address in this test")));
  /** Makes `n` calls, whatever they answer; returns how many each address got. */
  async function calls(n: number) {
    served.clear();
    for (let i = 0; i < n; i++) await call(request()).catch(() => undefined);
    return Object.fromEntries(served);
  }
  return { calls };
}

describe("the balancer's ejections", () => {
  it("ejects an instance that keeps failing, while the others serve", async () => {
    const balancer = balancerOver({ a: "serves", b: "serves", c: "down", d: "serves" });
    await balancer.calls(12); // c fails twice and is ejected
    expect(await balancer.calls(9)).toEqual({ a: 3, b: 3, d: 3 });
  });

  it("ejects at most half the instances for failures, rounded down", async () => {
    const balancer = balancerOver({ a: "down", b: "down", c: "down", d: "serves" });
    await balancer.calls(40);
    // Two of four may be out; the third failing one stays in rotation with the healthy one.
    const after = await balancer.calls(20);
    expect(Object.keys(after)).toHaveLength(2);
    expect(after["d"]).toBe(10);
  });

  it("never ejects the last instance, nor one of two that both fail", async () => {
    const single = balancerOver({ a: "down" });
    await single.calls(10);
    expect(await single.calls(5)).toEqual({ a: 5 });
    const pair = balancerOver({ a: "down", b: "down" });
    await pair.calls(10);
    expect(Object.keys(await pair.calls(10))).toHaveLength(1); // one out, one in
  });

  it("keeps impostors out beyond the cap: they are no instance of the service", async () => {
    const balancer = balancerOver({ a: "impostor", b: "impostor", c: "impostor", d: "serves", e: "down", f: "serves" });
    await balancer.calls(30);
    // All three impostors out at their first answer; of the three real instances, one (the failing one) may be ejected.
    expect(await balancer.calls(10)).toEqual({ d: 5, f: 5 });
    const impostorsOnly = balancerOver({ a: "impostor", b: "impostor" });
    await impostorsOnly.calls(4);
    // Nothing left to choose: the call falls through to the client's configured address.
    expect(await impostorsOnly.calls(4)).toEqual({});
  });
});
