import { Code } from "@connectrpc/connect";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { toConnectError } from "../rpc-server/errors.js";
import { DomainError, InvalidArgumentError } from "./errors.js";
import { isUuid, parseUuid, requirePresent, requireText } from "./input.js";

class ShelfEmptyError extends DomainError {
  override readonly name = "ShelfEmptyError";
  readonly kind = "failed_precondition";
}

class MisspeltKindError extends DomainError {
  override readonly name = "MisspeltKindError";
  // @ts-expect-error "not_fund" is no ErrorKind: `npx tsc -p .` fails if this ever compiles.
  readonly kind = "not_fund";
}

const logger = pino({ level: "silent" });

describe("domain errors at the RPC edge", () => {
  it("reports each kind with its code and the message written for the client", () => {
    expect(toConnectError(new ShelfEmptyError("shelf A is empty"), logger)).toMatchObject({ code: Code.FailedPrecondition, rawMessage: "shelf A is empty" });
    const invalid = new InvalidArgumentError("items[1].quantity", "must be greater than 0");
    expect(invalid).toMatchObject({ kind: "invalid_argument", field: "items[1].quantity" });
    expect(toConnectError(invalid, logger)).toMatchObject({ code: Code.InvalidArgument, rawMessage: "items[1].quantity: must be greater than 0" });
  });

  it("reports a kind the compiler would refuse as INTERNAL, hiding its message", () => {
    expect(toConnectError(new MisspeltKindError("not for clients"), logger)).toMatchObject({ code: Code.Internal, rawMessage: "internal error" });
  });
});

describe("request field checks", () => {
  const failure = (check: () => unknown) => {
    try {
      check();
    } catch (err) {
      return err;
    }
    return undefined;
  };

  it("requires text that is not blank, and bounds it", () => {
    expect(requireText("SKU-1", "sku")).toBe("SKU-1");
    expect(failure(() => requireText("  ", "items[0].sku"))).toMatchObject({ kind: "invalid_argument", field: "items[0].sku", message: "items[0].sku: is required" });
    expect(requireText("x".repeat(128), "sku")).toHaveLength(128);
    expect(failure(() => requireText("x".repeat(129), "sku"))).toMatchObject({ message: "sku: must be at most 128 characters" });
    expect(requirePresent("x".repeat(1000), "reason")).toHaveLength(1000);
    expect(failure(() => requirePresent("", "reason"))).toMatchObject({ message: "reason: is required" });
  });

  it("parses a UUID into lower case, and names the field when it is none", () => {
    expect(parseUuid("A47C7E31-90C3-4B87-A20F-56B3A60C588E", "order_id")).toBe("a47c7e31-90c3-4b87-a20f-56b3a60c588e");
    expect(failure(() => parseUuid("", "order_id"))).toMatchObject({ message: "order_id: is required" });
    expect(failure(() => parseUuid("a47c7e31-90c3-4b87-a20f-56b3a60c588", "order_id"))).toMatchObject({ message: "order_id: must be a UUID" });
    expect([isUuid("a47c7e31-90c3-4b87-a20f-56b3a60c588e"), isUuid(" a47c7e31-90c3-4b87-a20f-56b3a60c588e"), isUuid("order-1")]).toEqual([true, false, false]);
  });
});
