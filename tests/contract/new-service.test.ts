import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createFileRegistry, fromBinary, getOption } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { access } from "#gen/meshwork/v1/access_pb.js";
import { meshDeployables, type Deployable } from "#mesh";
import { freePortPair, insertEntry, newServiceEntry, renderEntry } from "#tools/build/new-service/manifest-entry.js";
import { scaffoldService } from "#tools/build/new-service/scaffold.js";
import { InvalidServiceNameError, validateServiceName } from "#tools/build/new-service/service-name.js";

/**
 * `npm run new-service` without its heavy half: names are checked, and a dry scaffold into a
 * scratch copy of proto/ and the manifest writes the expected files, a lint-clean contract and
 * the manifest entry, or nothing at all. tools/build/ci-new-service.sh scaffolds for real in a
 * clone and runs the lint and the new service's own test there.
 */
const root = resolve(import.meta.dirname, "../..");
const bin = (name: string) => join(root, "node_modules/.bin", name);
const scratchDirs: string[] = [];
afterAll(() => scratchDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** A scratch repository holding what a dry scaffold reads: the contracts, buf.yaml and the manifest. */
function scratchRepository(): string {
  const dir = mkdtempSync(join(tmpdir(), "meshwork-new-service-"));
  scratchDirs.push(dir);
  for (const entry of ["proto", "buf.yaml", join("services", "mesh.ts")]) cpSync(join(root, entry), join(dir, entry), { recursive: true });
  return dir;
}

/** Every file under `dir` with its text, to tell that nothing changed. */
const snapshot = (dir: string) =>
  readdirSync(dir, { recursive: true, encoding: "utf8" })
    .sort()
    .map((file) => [file, statSync(join(dir, file)).isFile() ? readFileSync(join(dir, file), "utf8") : "(folder)"]);

const expectedFiles = [
  "proto/shop/shipping/v1/shipping_events.proto",
  "proto/shop/shipping/v1/shipping_service.proto",
  "services/shipping/drizzle.config.ts",
  "services/shipping/main.ts",
  "services/shipping/src/app/items.ts",
  "services/shipping/src/app/receipts.ts",
  "services/shipping/src/build.ts",
  "services/shipping/src/config.ts",
  "services/shipping/src/db/schema.ts",
  "services/shipping/src/domain/errors.ts",
  "services/shipping/src/domain/item.ts",
  "services/shipping/src/rpc/routes.ts",
  "services/shipping/src/shipping.test.ts",
  "services/mesh.ts",
];

describe("new-service: the name", () => {
  const refused = (name: string) => () => validateServiceName(name, root, meshDeployables);

  it("accepts 2 to 20 lower-case letters that nothing else claims", () => {
    expect(refused("shipping")).not.toThrow();
    expect(refused("ab")).not.toThrow();
    expect(refused("a".repeat(20))).not.toThrow();
  });

  it.each(["Shipping", "s", "a".repeat(21), "ship-ping", "ship_ping", "shipping2", "", "ship ping"])("refuses %j by its format", (name) => {
    expect(refused(name)).toThrow(InvalidServiceNameError);
    expect(refused(name)).toThrow(/not a service name: use 2 to 20 lower-case letters/);
  });

  it("refuses a deployable's name, schema or event context, and a folder a service would claim", () => {
    expect(refused("order")).toThrow(/"order" is already a deployable of services\/mesh.ts/);
    expect(refused("gateway")).toThrow(/already a deployable/);
    expect(refused("orders")).toThrow(/taken: order owns the schema or the event context/);
    expect(refused("platform")).toThrow(/taken: services\/platform exists/);
    expect(refused("common")).toThrow(/taken: proto\/shop\/common exists/);
  });

  it.each([
    ["operator", /operator's certificate/],
    ["dlq", /SHOP_DLQ/],
    ["ops", /OPS_PORT/],
    ["database", /DATABASE_URL/],
    ["postgres", /superuser/],
    ["select", /reserved word in SQL/],
    ["user", /reserved word in SQL/],
    ["class", /keyword in TypeScript or Python/],
    ["import", /keyword in TypeScript or Python/],
  ])("refuses the reserved %j", (name, why) => {
    expect(refused(name)).toThrow(InvalidServiceNameError);
    expect(refused(name)).toThrow(why);
  });

  it("makes the command exit 2 with the reason, before it touches anything", () => {
    const run = (...args: string[]) => spawnSync(bin("tsx"), ["tools/build/new-service.ts", ...args], { cwd: root, encoding: "utf8" });
    const badName = run("Shipping");
    expect(badName.status).toBe(2);
    expect(badName.stderr).toMatch(/new-service: "Shipping" is not a service name.*; nothing was written/);
    const noName = run();
    expect(noName.status).toBe(2);
    expect(noName.stderr).toMatch(/usage: npm run new-service -- <name>/);
  });
});

describe("new-service: the manifest entry", () => {
  const at = (port: number, opsPort: number): Deployable => newServiceEntry(`s${port}`, { port, opsPort });

  it("takes the lowest port whose pair is free on both sides", () => {
    expect(freePortPair([at(50051, 51051), at(50052, 51053)])).toEqual({ port: 50054, opsPort: 51054 });
    const { port, opsPort } = freePortPair(meshDeployables);
    const taken = meshDeployables.flatMap((d) => [d.port.default, d.opsPort.default]);
    expect(taken).not.toContain(port);
    expect(taken).not.toContain(opsPort);
    expect(opsPort).toBe(port + 1000);
  });

  it("renders an entry that reads back as itself, and inserts it just before the gateway's", () => {
    const entry = newServiceEntry("shipping", { port: 50055, opsPort: 51055 });
    expect(entry).toMatchObject({ port: { variable: "SHIPPING_PORT" }, opsPort: { variable: "SHIPPING_OPS_PORT" }, serves: ["shop.shipping.v1.ShippingService"], consumes: [{ context: "shipping", durable: "shipping" }] });
    const rendered = renderEntry(entry, "  ");
    expect(new Function(`return ${rendered.trim().replace(/,$/, "")}`)()).toEqual(entry);
    const source = readFileSync(join(root, "services/mesh.ts"), "utf8");
    const inserted = insertEntry(source, entry);
    expect(inserted.replace(`${rendered}\n`, "")).toBe(source);
    expect(inserted).toContain(`${rendered}\n  {\n    name: "gateway"`);
    expect(() => insertEntry(source.replace('name: "gateway"', 'name: "edge"'), entry)).toThrow(/gateway's entry/);
  });
});

describe("new-service: a dry scaffold", () => {
  it("writes the contract, the service in the house shape and its manifest entry; the contract lints and admits the gateway and the operator", () => {
    const dir = scratchRepository();
    const written = scaffoldService({ root: dir, name: "shipping", deployables: meshDeployables, generate: false });
    expect([...written].sort()).toEqual([...expectedFiles].sort());
    for (const file of written) expect(readFileSync(join(dir, file), "utf8")).not.toMatch(/\{\{|__name__/);
    const manifest = readFileSync(join(dir, "services/mesh.ts"), "utf8");
    expect(manifest.indexOf('name: "shipping"')).toBeGreaterThan(manifest.indexOf('name: "notification"'));
    expect(manifest.indexOf('name: "shipping"')).toBeLessThan(manifest.indexOf('name: "gateway"'));

    const lint = spawnSync(bin("buf"), ["lint"], { cwd: dir, encoding: "utf8" });
    expect(lint.stdout + lint.stderr).toBe("");
    expect(lint.status).toBe(0);
    const image = join(dir, "image.binpb");
    expect(spawnSync(bin("buf"), ["build", "-o", image], { cwd: dir }).status).toBe(0);
    const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(image)));
    const service = registry.getService("shop.shipping.v1.ShippingService");
    expect(service?.methods.map((m) => [m.name, [...getOption(m, access).callers].sort()])).toEqual([["CreateItem", ["gateway", "operator"]]]);
    expect(registry.getMessage("shop.shipping.v1.ItemCreated")?.fields.map((f) => f.name)).toEqual(["item_id", "description"]);
  });

  it("writes nothing for a name it refuses, and undoes what it wrote when a generator fails", () => {
    const dir = scratchRepository();
    const before = snapshot(dir);
    expect(() => scaffoldService({ root: dir, name: "operator", deployables: meshDeployables, generate: false })).toThrow(InvalidServiceNameError);
    expect(snapshot(dir)).toEqual(before);
    // No package.json here, so `npm run generate` fails once the files are written.
    expect(() => scaffoldService({ root: dir, name: "shipping", deployables: meshDeployables, generate: true })).toThrow();
    expect(snapshot(dir)).toEqual(before);
  });
});
