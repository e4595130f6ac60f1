import type { Client } from "@connectrpc/connect";
import { expect } from "vitest";
import type { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import type { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";

/**
 * Places an order (with `place`) whose charge fails an attempt and is retried: payment's
 * table stays locked until the first attempt has timed out behind the lock and the saga shows
 * it retrying; then the lock goes and a later attempt succeeds. Returns the order's id.
 */
export async function placeWithRetriedCharge(sql: ReturnType<typeof connect>, orders: Client<typeof OrderService>, place: () => Promise<string>): Promise<string> {
  let locked!: () => void;
  let release!: () => void;
  const lockTaken = new Promise<void>((resolve) => (locked = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  const lock = sql.begin(async (tx) => {
    await tx`lock table payment.payments in access exclusive mode`;
    locked();
    await released;
  });
  await lockTaken;
  try {
    const orderId = await place();
    await eventually(async () => {
      const { saga } = await orders.getOrder({ orderId });
      expect(saga?.steps.find((s) => s.name === "charge")?.phases.some((p) => p.outcome === "retrying")).toBe(true);
    }, 20_000);
    return orderId;
  } finally {
    release();
    await lock;
  }
}
