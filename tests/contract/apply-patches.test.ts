import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { assertDriverPatched, driverPatchMarker } from "#platform/data/db.js";
import { applyPatches, parseUnifiedDiff, patchText } from "#tools/build/apply-patches.js";

const root = resolve(import.meta.dirname, "../..");
const patchFile = join(root, "patches/postgres+3.4.9.patch");
const files = parseUnifiedDiff(readFileSync(patchFile, "utf8"));

describe("tools/build/apply-patches (npm postinstall)", () => {
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

  it("reads a hunk by its line counts, so removed or added lines that look like file headers stay in it", () => {
    const diff = [
      "--- a/schema.sql",
      "+++ b/schema.sql",
      "@@ -1,3 +1,3 @@",
      " create table t (x int);",
      "--- the old comment",
      "+++ the new comment",
      " select 1;",
      "--- a/other.sql",
      "+++ b/other.sql",
      "@@ -1 +1 @@",
      "-old",
      "\\ No newline at end of file",
      "+new",
      "",
    ].join("\n");
    expect(parseUnifiedDiff(diff)).toEqual([
      {
        path: "schema.sql",
        hunks: [{ before: "create table t (x int);\n-- the old comment\nselect 1;\n", after: "create table t (x int);\n++ the new comment\nselect 1;\n" }],
      },
      { path: "other.sql", hunks: [{ before: "old", after: "new\n" }] },
    ]);
    expect(() => parseUnifiedDiff("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n same\n-old\n+new\n")).toThrow(/x: hunk 1 ends before its @@ -1,3 \+1,3 @@ header says/);
    expect(() => parseUnifiedDiff("--- a/x\n+++ b/x\n@@ -1,2 +1,1 @@\n same\n+new\n-old\n")).toThrow(/x: hunk 1 has more lines than/);
  });

  it("marks the patched driver with the line services/platform/data/db.ts requires before it opens a pool", () => {
    for (const file of files) {
      expect(file.hunks.some((hunk) => hunk.after.includes(driverPatchMarker) && !hunk.before.includes(driverPatchMarker))).toBe(true);
    }
    expect(() => assertDriverPatched()).not.toThrow(); // the installed driver, patched by the postinstall

    const esm = files.find((file) => file.path === "src/connection.js")!;
    const installed = readFileSync(join(root, "node_modules/postgres", esm.path), "utf8");
    const unpatched = join(scratch, "unpatched-connection.js");
    writeFileSync(unpatched, esm.hunks.reduce((text, hunk) => text.replace(hunk.after, () => hunk.before), installed));
    expect(() => assertDriverPatched(unpatched)).toThrow(/lacks the fix in patches\/postgres\+3\.4\.9\.patch.*run `npm ci` or `npm install` \(without --ignore-scripts\)/);
  });
});
