import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const legacyRoot = resolve(import.meta.dirname, "../..");

/** Every source file under legacy/, its tests aside (they may use the repository's test support). */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === "node_modules" ? [] : sources(path);
    return /\.ts$/.test(entry.name) && !/\.test\.ts$/.test(entry.name) && entry.name !== "vitest.config.ts" ? [path] : [];
  });
}

const specifiers = (source: string) => [...source.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)].map((m) => m[1]!);

describe("the legacy app", () => {
  it("imports nothing of the repository's own code outside legacy/: only its own files and npm packages", () => {
    const files = sources(legacyRoot);
    expect(files.map((f) => relative(legacyRoot, f))).toContain("oldshop/main.ts");
    const outside = files.flatMap((file) =>
      specifiers(readFileSync(file, "utf8"))
        .filter((spec) => spec.startsWith("#") || (spec.startsWith(".") && relative(legacyRoot, resolve(file, "..", spec)).startsWith("..")))
        .map((spec) => `${relative(legacyRoot, file)}: ${spec}`),
    );
    expect(outside).toEqual([]);
  });
});
