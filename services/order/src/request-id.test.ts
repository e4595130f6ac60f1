import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import { connect } from "#tests/support/databases.js";
import { startInProcessMesh, type InProcessMesh } from "#tests/support/services.js";

describe("CreateOrder's request_id", () => {
  let mesh: InProcessMesh;
  beforeAll(async () => {
    mesh = await startInProcessMesh();
  });
  afterAll(() => mesh?.close());

  it("returns the same order for the same request, and refuses it for a different one", async () => {
    const orders = mesh.client(OrderService, "order");
    const requestId = randomUUID();
    const request = { customerId: "c-idem", items: [{ sku: "MW-MUG-001", quantity: 1 }, { sku: "MW-STK-003", quantity: 2 }], paymentToken: "tok_visa", requestId };
    const { order } = await orders.createOrder(request);
    // The same order, its lines listed in another order: still the same request.
    const again = await orders.createOrder({ ...request, items: [...request.items].reverse() });
    expect(again.order?.id).toBe(order?.id);

    for (const different of [
      { items: [{ sku: "MW-MUG-001", quantity: 2 }, request.items[1]!] },
      { items: [request.items[0]!] },
      { paymentToken: "tok_decline" },
    ]) {
      const err = await orders.createOrder({ ...request, ...different }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(err).toMatchObject({ code: Code.AlreadyExists, rawMessage: "request_id: already used for a different order" });
    }
    // Request ids are per customer: another customer's same id is their own order.
    const other = await orders.createOrder({ ...request, customerId: "c-other" });
    expect(other.order?.id).not.toBe(order?.id);

    const sql = connect(mesh.databaseUrl);
    try {
      const [row] = await sql`select count(*)::int as n from orders.orders where request_id = ${requestId}`;
      expect(row?.["n"]).toBe(2);
    } finally {
      await sql.end();
    }
  });
});
