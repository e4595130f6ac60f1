import { describe, expect, it } from "vitest";
import { normalizeLines, planCommit, planRelease, type Reservation } from "./reservation.js";

const reservation = (status: Reservation["status"]): Reservation => ({ id: "r", orderId: "o", status, items: [] });

describe("normalizeLines", () => {
  it("merges repeated SKUs and sorts by SKU so row locks are taken in one order", () => {
    expect(
      normalizeLines([
        { sku: "b", quantity: 1 },
        { sku: "a", quantity: 2 },
        { sku: "b", quantity: 3 },
      ]),
    ).toEqual([
      { sku: "a", quantity: 2 },
      { sku: "b", quantity: 4 },
    ]);
  });

  it.each([
    [[], "items: must not be empty"],
    [[{ sku: "a", quantity: 0 }], "items[0].quantity: must be greater than 0"],
    [[{ sku: "", quantity: 1 }], "items[0].sku: is required"],
    [[{ sku: "a", quantity: 10_001 }], "items[0].quantity: must be at most 10000"],
  ])("rejects %o", (items, message) => {
    expect(() => normalizeLines(items)).toThrow(message);
  });
});

describe("reservation transitions", () => {
  it("releases a reserved reservation once, and never a committed one", () => {
    expect(planRelease(reservation("reserved"))).toBe("release");
    expect(planRelease(reservation("released"))).toBe("none");
    expect(() => planRelease(reservation("committed"))).toThrow("cannot release the reservation of order o: it is committed");
  });

  it("commits a reserved reservation once, and never a released one", () => {
    expect(planCommit(reservation("reserved"))).toBe("commit");
    expect(planCommit(reservation("committed"))).toBe("none");
    expect(() => planCommit(reservation("released"))).toThrow("cannot commit the reservation of order o: it is released");
  });
});
