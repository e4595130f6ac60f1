import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import { connect } from "../support/databases.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

describe("when a dependency is down", () => {
  let mesh: InProcessMesh;

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    await mesh.oldShop.close(); // the catalog route's default side, which prices orders
  });
  afterAll(() => mesh?.close());

  it("CreateOrder answers UNAVAILABLE without leaking addresses, and stores nothing", async () => {
    const orders = mesh.client(OrderService, "order");
    const started = Date.now();
    const err = await orders
      .createOrder({ customerId: "c", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.Unavailable, rawMessage: "a dependency is unavailable; retry later" });
    expect(Date.now() - started).toBeLessThan(5_000); // refused at once, not after a timeout
    const sql = connect(mesh.databaseUrl);
    try {
      const [row] = await sql`select (select count(*)::int from orders.orders) as orders, (select count(*)::int from orders.sagas) as sagas`;
      expect(row).toEqual({ orders: 0, sagas: 0 });
    } finally {
      await sql.end();
    }
  });
});
