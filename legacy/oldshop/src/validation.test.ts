import { describe, expect, it } from "vitest";
import { BadRequest, validProductChange, validSku } from "./validation.js";

const refusal = (check: () => unknown) => {
  try {
    check();
  } catch (err) {
    if (err instanceof BadRequest) return err.field;
    throw err;
  }
  return "taken";
};

describe("the old shop's input checks", () => {
  it.each([".", "..", "...", " ", "\u00a0", "  "])("refuses the SKU %j naming sku", (sku) => {
    expect(refusal(() => validSku(sku))).toBe("sku");
  });

  it("takes SKUs with dots among other characters", () => {
    expect([validSku("MW.MUG.001"), validSku(".x"), validSku("a..")]).toEqual(["MW.MUG.001", ".x", "a.."]);
  });

  it.each(["", " ", "\u00a0 \u2003", "   "])("refuses the title %j, blank once trimmed, naming title", (title) => {
    expect(refusal(() => validProductChange({ title, price: "1.00", currency: "USD" }))).toBe("title");
  });

  it("still takes a blurb left out or empty, and a title with spaces around it as sent", () => {
    expect(validProductChange({ title: " Mug ", blurb: "", price: "1.00", currency: "USD" })).toEqual({ title: " Mug ", blurb: "", price: "1.00", currency: "USD" });
  });
});
