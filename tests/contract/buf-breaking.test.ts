import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");
const buf = join(root, "node_modules/.bin/buf");
const scratch = mkdtempSync(join(tmpdir(), "meshwork-breaking-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of the workspace's contracts with one file edited. */
function variant(name: string, edit: (orderProto: string) => string): string {
  const dir = join(scratch, name);
  cpSync(join(root, "proto"), join(dir, "proto"), { recursive: true });
  cpSync(join(root, "buf.yaml"), join(dir, "buf.yaml"));
  const file = join(dir, "proto/shop/order/v1/order_service.proto");
  writeFileSync(file, edit(readFileSync(file, "utf8")));
  return dir;
}

function breaking(changed: string) {
  const baseline = variant("baseline", (s) => s);
  return spawnSync(buf, ["breaking", changed, "--against", baseline], { encoding: "utf8" });
}

describe("buf breaking (FILE) guards the public contract", () => {
  it("fails when a field is removed", () => {
    const result = breaking(variant("removed", (s) => s.replace("  string payment_token = 3;\n", "")));
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/Previously present field "3" with name "payment_token" on message "CreateOrderRequest" was deleted/);
  });

  it("fails when a field is renumbered", () => {
    const result = breaking(variant("renumbered", (s) => s.replace("string request_id = 4;", "string request_id = 9;")));
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/request_id/);
  });

  it("passes an additive change", () => {
    const result = breaking(variant("additive", (s) => s.replace("  string request_id = 4;\n", "  string request_id = 4;\n  string note = 5;\n")));
    expect(result.stdout + result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  it("the workspace itself lints clean", () => {
    expect(() => execFileSync(buf, ["lint"], { cwd: root, encoding: "utf8" })).not.toThrow();
  });
});
