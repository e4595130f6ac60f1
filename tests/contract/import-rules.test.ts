import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { withSchema } from "#mesh";

/**
 * `domain/` is plain TypeScript: a service's business rules import nothing generated (#gen),
 * nothing of its database (db/) and none of the kit's machinery. What they may import: each
 * other, node:*, and the kit's domain layer (services/platform/domain/: the errors they throw
 * and the checks of request fields), which itself imports nothing from outside it.
 */
const root = resolve(import.meta.dirname, "../..");
const servicesDir = join(root, "services");

/** The TypeScript files under `dir`; its tests too if `withTests`. */
const sources = (dir: string, withTests = false): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name), withTests) : entry.name.endsWith(".ts") && (withTests || !entry.name.endsWith(".test.ts")) ? [join(dir, entry.name)] : [],
  );

/** Every module a file imports or re-exports from, side-effect imports included. */
const importsOf = (file: string) => {
  const text = readFileSync(file, "utf8");
  const staticImports = [...text.matchAll(/^\s*(?:(?:import|export)\b[^;]*?\bfrom\s+|import\s+)["']([^"']+)["']/gm)];
  const dynamicImports = [...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)];
  return [...staticImports, ...dynamicImports].map((match) => match[1]!);
};

/** What in `dir` imports something `allowed` does not admit, as "file: specifier". */
const importsOutside = (dir: string, allowed: (specifier: string) => boolean, withTests = false) =>
  sources(dir, withTests).flatMap((file) => importsOf(file).filter((specifier) => !allowed(specifier)).map((specifier) => `${relative(root, file)}: ${specifier}`));

const services = readdirSync(servicesDir, { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && existsSync(join(servicesDir, entry.name, "src")))
  .map((entry) => entry.name)
  .sort();

describe("the domain rule", () => {
  it("finds every service, each with a domain/", () => {
    expect(services).toEqual(withSchema.map((d) => d.name).sort()); // the manifest's services, each in its folder
    expect(services.filter((name) => !existsSync(join(servicesDir, name, "src/domain")))).toEqual([]);
  });

  it("keeps each service's domain/ to itself, node:* and the kit's domain layer", () => {
    const allowed = (specifier: string) => specifier.startsWith("./") || specifier.startsWith("node:") || /^#platform\/domain\/[a-z-]+\.js$/.test(specifier);
    expect(services.flatMap((name) => importsOutside(join(servicesDir, name, "src/domain"), allowed))).toEqual([]);
  });

  it("keeps the kit's domain layer free of imports from outside it", () => {
    const kitDomain = join(servicesDir, "platform/domain");
    expect(sources(kitDomain).length).toBeGreaterThan(0);
    expect(importsOutside(kitDomain, (specifier) => specifier.startsWith("./"))).toEqual([]);
  });
});

/**
 * The layering of the tree, followed through every import (relative or through package.json's
 * aliases) to the files it reaches: the kit's code reaches nothing outside the kit and gen/;
 * the kit's tests reach no service and no gateway code, however indirectly; a service's code
 * or the gateway's reaches no other service's code, only its generated contract (a service's
 * tests may start the whole mesh, through tests/support).
 */
describe("the import rules", () => {
  const aliases = Object.entries((JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { imports: Record<string, string> }).imports);

  /** The repository file an import names, or undefined for a package or node:*. */
  function target(from: string, specifier: string): string | undefined {
    let path: string | undefined;
    if (specifier.startsWith(".")) path = resolve(dirname(from), specifier);
    for (const [alias, to] of aliases) {
      if (alias === specifier) path = join(root, to);
      else if (alias.endsWith("/*") && specifier.startsWith(alias.slice(0, -1))) path = join(root, to.slice(0, -1) + specifier.slice(alias.length - 1));
    }
    if (!path) return undefined;
    const ts = path.replace(/\.js$/, ".ts");
    const found = [ts, path].find((candidate) => existsSync(candidate));
    // An import of ours that names no file would leave the rules checking nothing beyond it.
    if (!found) throw new Error(`${relative(root, from)} imports ${specifier}, which names no file`);
    return found;
  }

  /** Every repository file `files` reach through their imports, themselves included. */
  function reached(files: string[]): Set<string> {
    const seen = new Set<string>();
    const queue = [...files];
    while (queue.length > 0) {
      const file = queue.pop()!;
      if (seen.has(file) || !file.endsWith(".ts")) continue;
      seen.add(file);
      for (const specifier of importsOf(file)) {
        const next = target(file, specifier);
        if (next && !next.startsWith(join(root, "gen") + "/")) queue.push(next);
      }
    }
    return seen;
  }

  const kit = join(servicesDir, "platform");
  const inside = (dir: string) => (file: string) => file.startsWith(dir + "/");
  /** Code of a deployable: a service's folder (not the kit's, not the shop's) or the gateway's. */
  const deployableCode = (file: string) => services.some((name) => inside(join(servicesDir, name))(file)) || inside(join(root, "gateway"))(file);

  it("the kit's code reaches nothing outside the kit", () => {
    const code = sources(kit);
    const found = [...reached(code)].filter((file) => !inside(kit)(file)).map((file) => relative(root, file));
    expect(code.length).toBeGreaterThan(20);
    expect(found).toEqual([]);
  });

  it("the kit's tests reach no service and no gateway code", () => {
    const tests = sources(kit, true).filter((file) => file.endsWith(".test.ts"));
    const found = [...reached(tests)].filter(deployableCode).map((file) => relative(root, file));
    expect(tests.length).toBeGreaterThan(10);
    expect(found).toEqual([]);
  });

  it("a service's code and the gateway's reach no other service's code", () => {
    const areas = [...services.map((name) => join(servicesDir, name)), join(root, "gateway")];
    const found = areas.flatMap((area) => [...reached(sources(area))].filter((file) => deployableCode(file) && !inside(area)(file)).map((file) => `${relative(root, area)} reaches ${relative(root, file)}`));
    expect(areas.length).toBeGreaterThan(4);
    expect(found).toEqual([]);
  });
});
