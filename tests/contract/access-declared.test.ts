import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { getOption, hasOption, type DescService } from "@bufbuild/protobuf";
import { access } from "#gen/meshwork/v1/access_pb.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { SagaAdminService } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { CatalogService } from "#gen/shop/catalog/v1/catalog_service_pb.js";
import { PaymentService } from "#gen/shop/payment/v1/payment_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { meshServiceNames } from "#mesh";
import { CONSOLE } from "#platform/trust/mesh-identity.js";

/** Every service in the generated contracts, so a new one is checked without being listed here. */
const gen = resolve(import.meta.dirname, "../../gen/shop");
const services: DescService[] = [];
for (const entry of readdirSync(gen, { recursive: true, encoding: "utf8" }).filter((file) => file.endsWith("_service_pb.ts"))) {
  const module = (await import(join(gen, entry))) as Record<string, unknown>;
  for (const value of Object.values(module)) if ((value as { kind?: string })?.kind === "service") services.push(value as DescService);
}

/**
 * A method without (meshwork.v1.access) admits nobody, so a forgotten option fails closed;
 * this catches it before a caller does, and catches a caller name that is no identity at all.
 */
describe("every RPC names the callers it admits", () => {
  const mesh = services.filter((service) => service.typeName !== StorefrontService.typeName);
  const meshCallers = new Set([...meshServiceNames, "operator", CONSOLE]);

  it("finds the contracts", () => expect(mesh.map((s) => s.typeName)).toContain(PaymentService.typeName));

  it.each(mesh.flatMap((service) => service.methods.map((method) => [`${service.typeName}/${method.name}`, method] as const)))("%s", (_name, method) => {
    expect(hasOption(method, access)).toBe(true);
    const { callers } = getOption(method, access);
    expect(callers.length).toBeGreaterThan(0);
    expect(callers.filter((caller) => !meshCallers.has(caller))).toEqual([]);
  });

  it.each(StorefrontService.methods.map((method) => [method.name, method] as const))("shop.gateway.v1.StorefrontService/%s admits customers or anyone", (_name, method) => {
    expect(hasOption(method, access)).toBe(true);
    expect(getOption(method, access).callers.filter((caller) => caller !== "customer" && caller !== "anyone")).toEqual([]);
    expect(getOption(method, access).callers).toHaveLength(1);
  });

  it("keeps the writes that move money and stock to order and operators", () => {
    const callers = (service: typeof PaymentService | typeof InventoryService, name: string) => getOption(service.methods.find((m) => m.name === name)!, access).callers;
    expect(callers(PaymentService, "Charge")).toEqual(["order"]);
    expect(callers(PaymentService, "Refund")).toEqual(["order"]);
    expect(callers(InventoryService, "ReserveStock")).toEqual(["order"]);
    expect(callers(InventoryService, "AdjustStock")).toEqual(["operator"]);
    expect(SagaAdminService.methods.map((m) => getOption(m, access).callers.join())).toEqual(SagaAdminService.methods.map(() => `operator,${CONSOLE}`));
  });

  it("admits the console's backend to the saga admin RPCs and the catalog's sync status, routed writes and refused writes' discard alone: the gateway's operator console must hold no more than those", () => {
    const admitting = mesh.flatMap((service) => service.methods.filter((method) => getOption(method, access).callers.includes(CONSOLE)).map((method) => `${service.typeName}/${method.name}`));
    expect(admitting.sort()).toEqual(
      [...["ListSagas", "GetSaga", "RetrySaga", "CompensateSaga"].map((name) => `${SagaAdminService.typeName}/${name}`), ...["UpdateProduct", "GetSyncStatus", "DiscardRefusedWrites"].map((name) => `${CatalogService.typeName}/${name}`)].sort(),
    );
  });
});
