/**
 * Who a deployable's contract lets in, read from the meshwork.v1.access option of every RPC it
 * serves: the deployables that may call it, and whether customers or anyone may too. The
 * NetworkPolicies are rendered from this, and the deploy test checks them against it.
 */
import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { getOption, type DescService } from "@bufbuild/protobuf";
import { access } from "#gen/meshwork/v1/access_pb.js";
import { OPERATOR } from "#platform/trust/mesh-identity.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";
import type { Deployable } from "#mesh";

const shopGen = resolve(import.meta.dirname, "../gen/shop");

/** Every generated service descriptor of the shop, by its protobuf name. */
async function shopDescriptors(): Promise<Map<string, DescService>> {
  const descriptors = new Map<string, DescService>();
  for (const context of readdirSync(shopGen)) {
    const dir = join(shopGen, context, "v1");
    for (const file of readdirSync(dir).filter((f) => f.endsWith("_service_pb.ts"))) {
      const module = (await import(join(dir, file))) as Record<string, { kind?: string }>;
      for (const value of Object.values(module)) if (value.kind === "service") descriptors.set((value as DescService).typeName, value as DescService);
    }
  }
  return descriptors;
}

/** Callers that no NetworkPolicy names: operators come through port-forward, the rest through the ingress. */
const outside = new Set([OPERATOR, "anyone", "customer"]);

/** The pod a caller that is no deployable runs in: the console's backend is the gateway's operator listener. */
const podOf = (caller: string) => (caller === CONSOLE ? "gateway" : caller);

export interface ContractAccess {
  /** The deployables whose pods its RPCs admit (the console's as the gateway), sorted. */
  callers: string[];
  /** True if customers or anyone may call it: it serves on a public port. */
  public: boolean;
  /** Its methods grouped by the deployables they admit, e.g. "Charge, Refund: order". */
  summary: string[];
}

export type ContractReader = (deployable: Pick<Deployable, "name" | "serves">) => ContractAccess;

/** Reads the contract once; the function it returns answers for any deployable. */
export async function readContracts(): Promise<ContractReader> {
  const descriptors = await shopDescriptors();
  return ({ name, serves }) => {
    const methods = serves.flatMap((typeName) => {
      const service = descriptors.get(typeName);
      if (!service) throw new Error(`${name} serves ${typeName}, which has no generated descriptor`);
      return service.methods.map((method) => ({ name: method.name, callers: getOption(method, access).callers }));
    });
    const inside = (callers: readonly string[]) => [...new Set(callers.filter((c) => !outside.has(c)))].sort();
    const groups = new Map<string, string[]>();
    for (const method of methods) {
      // What only an operator may call is named too: no NetworkPolicy admits it, port-forward does.
      const named = inside(method.callers).map((caller) => (podOf(caller) === caller ? caller : `${caller} (in the ${podOf(caller)} pod)`));
      const key = named.join(", ") || (method.callers.includes(OPERATOR) ? `${OPERATOR} only` : "");
      if (key) groups.set(key, [...(groups.get(key) ?? []), method.name]);
    }
    return {
      callers: [...new Set(inside(methods.flatMap((m) => m.callers)).map(podOf))].sort(),
      public: methods.some((m) => m.callers.includes("anyone") || m.callers.includes("customer")),
      summary: [...groups].map(([callers, names]) => `${names.join(", ")}: ${callers}`),
    };
  };
}
