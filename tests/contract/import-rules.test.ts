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
const importsOf = (file: string) => [...readFileSync(file, "utf8").matchAll(/^\s*(?:(?:import|export)\b[^;]*?\bfrom\s+|import\s+)"([^"]+)"/gm)].map((match) => match[1]!);

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
 * The layering of the tree: the kit knows no service (nor the shop's code or its manifest),
 * and a service or the gateway reaches no other service's code, only its generated contract.
 */
describe("the import rules", () => {
  /** A relative import that stays inside `dir`, or an alias that is not another area's code. */
  const within = (dir: string, file: string, specifier: string) => !specifier.startsWith(".") || resolve(dirname(file), specifier).startsWith(dir + "/");

  it("the kit and its tests import no service, no shop code and no manifest", () => {
    const kit = join(servicesDir, "platform");
    const foreign = /^#(services|gateway|shop|mesh)(\/|$)/;
    const found = sources(kit, true).flatMap((file) => importsOf(file).filter((s) => foreign.test(s) || !within(kit, file, s)).map((s) => `${relative(root, file)}: ${s}`));
    expect(sources(kit, true).length).toBeGreaterThan(20);
    expect(found).toEqual([]);
  });

  it("a service and the gateway import no other service", () => {
    const areas = [...services.map((name) => join(servicesDir, name)), join(root, "gateway")];
    const found = areas.flatMap((area) =>
      sources(area, true).flatMap((file) => importsOf(file).filter((s) => /^#(services|gateway)\//.test(s) || !within(area, file, s)).map((s) => `${relative(root, file)}: ${s}`)),
    );
    expect(areas.length).toBeGreaterThan(4);
    expect(found).toEqual([]);
  });
});
