import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { applyPatches, parseUnifiedDiff, patchText } from "../../tools/apply-patches.js";

const root = resolve(import.meta.dirname, "../..");
const patchFile = join(root, "patches/postgres+3.4.9.patch");
const files = parseUnifiedDiff(readFileSync(patchFile, "utf8"));

describe("tools/apply-patches (npm postinstall)", () => {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-patches-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("has patched both builds the project can load, ESM and CommonJS", () => {
    expect(files.map((file) => file.path).sort()).toEqual(["cjs/src/connection.js", "src/connection.js"]);
    for (const file of files) {
      const installed = readFileSync(join(root, "node_modules/postgres", file.path), "utf8");
      expect(patchText(installed, file).outcome).toBe("already applied");
    }
  });

  it("patches pristine source to exactly the installed text, and leaves patched source alone", () => {
    for (const file of files) {
      const installed = readFileSync(join(root, "node_modules/postgres", file.path), "utf8");
      const pristine = file.hunks.reduce((text, hunk) => text.replace(hunk.after, () => hunk.before), installed);
      expect(pristine).not.toBe(installed);
      expect(patchText(pristine, file)).toEqual({ text: installed, outcome: "applied" });
    }
  });

  it("fails loudly when the source no longer matches, or another version is installed", () => {
    const [file] = files;
    const installed = readFileSync(join(root, "node_modules/postgres", file!.path), "utf8");
    const pristine = file!.hunks.reduce((text, hunk) => text.replace(hunk.after, () => hunk.before), installed);
    const moved = pristine.replace("function nextWrite(fn) {", "function nextWrite(fn, more) {");
    expect(() => patchText(moved, file!)).toThrow(/hunk 1 matches 0 places/);

    const patches = join(scratch, "patches");
    mkdirSync(patches);
    writeFileSync(join(patches, "postgres+3.4.9.patch"), readFileSync(patchFile));
    mkdirSync(join(scratch, "node_modules/postgres"), { recursive: true });
    writeFileSync(join(scratch, "node_modules/postgres/package.json"), JSON.stringify({ name: "postgres", version: "3.5.0" }));
    expect(() => applyPatches(patches, join(scratch, "node_modules"), () => {})).toThrow(/fixes postgres 3\.4\.9, but postgres 3\.5\.0 is installed/);
  });
});
