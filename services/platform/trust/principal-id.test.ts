import { describe, expect, it } from "vitest";
import { isSafePrincipalId } from "./principal-id.js";

describe("isSafePrincipalId", () => {
  it.each(["ada", "A", "7", "chaos-0", "py-gateway", "ada.lovelace@example.com", "user_42", "a".repeat(64)])("accepts %j", (id) => {
    expect(isSafePrincipalId(id)).toBe(true);
  });

  it.each([
    ["empty", ""],
    ["65 characters", "a".repeat(65)],
    ["a zero-width space", "a\u200Bda"],
    ["a zero-width joiner", "ada\u200D"],
    ["a byte order mark", "\uFEFFada"],
    ["a Cyrillic look-alike", "\u0430da"],
    ["a fullwidth letter", "\uFF41da"],
    ["a NUL", "ada\u0000"],
    ["a newline at the end", "ada\n"],
    ["a carriage return", "ada\revil"],
    ["a DEL", "ada\u007F"],
    ["a space", "ada lovelace"],
    ["a non-breaking space", "ada\u00A0"],
    ["a tab", "\tada"],
    ["a leading dot", ".ada"],
    ["a leading dash", "-ada"],
    ["a leading @", "@ada"],
    ["a slash", "ada/../eve"],
    ["a colon", "ada:eve"],
    ["a quote", "ada'"],
  ])("refuses %s", (_, id) => {
    expect(isSafePrincipalId(id)).toBe(false);
  });
});
