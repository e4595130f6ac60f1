import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { build, type Metafile } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { meshDeployables } from "#mesh";
import { createHealthProbe } from "#platform/rpc-client/health-probe.js";
import { buildRecordPath, bundlePath, compiledNodeFlags, runServicePath } from "#deploy/bundle-layout.js";
import { consoleScriptBuild } from "#gateway/src/console-assets.js";
import { bundleMesh, legacyViolations, productionViolations, staleBuild } from "#tools/build/bundle.js";
import { freePort } from "#tools/infra/tcp.js";
import { createSupervisor } from "#tools/mesh/supervisor.js";
import { childEnv, meshOnFreePorts, portEnv, withOwnCredentials } from "#tools/mesh/topology.js";
import { createServiceDatabases, type DatabaseService } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { createLegacyDatabase } from "../support/legacy-databases.js";
import { testAuthSecret } from "../support/gateway.js";
import { testPki } from "../support/mesh-clients.js";
import { startTestNats } from "../support/nats.js";

/**
 * The compiled runtime the image runs (`npm run build`, tools/build/bundle.ts), built into a
 * scratch folder laid out as the image's /app (package.json, node_modules, dist/): what it
 * holds, what it must never hold, and two deployables started from it as the image starts
 * them (`node dist/run-service.js <name>`), against a real Postgres and NATS.
 */
const root = resolve(import.meta.dirname, "../..");
const devOnly = /^(tools|tests|bench)\//;
let app: string;
let dist: string;
let inputs: string[];

beforeAll(async () => {
  app = mkdtempSync(join(tmpdir(), "meshwork-app-"));
  copyFileSync(join(root, "package.json"), join(app, "package.json"));
  symlinkSync(join(root, "node_modules"), join(app, "node_modules"));
  dist = join(app, "dist");
  inputs = await bundleMesh(dist);
});
afterAll(() => rmSync(app, { recursive: true, force: true }));

/** The files a bundle was made from, by its source map, relative to the repository. */
function sourcesOf(bundle: string): string[] {
  const map = JSON.parse(readFileSync(`${bundle}.map`, "utf8")) as { sources: string[] };
  return map.sources.map((source) => relative(root, resolve(dirname(bundle), source)));
}

describe("npm run build", () => {
  it("writes a bundle and its source map for every deployable of the manifest, and the production entry", () => {
    for (const file of [...meshDeployables.map((d) => bundlePath(d.name)), runServicePath]) {
      expect(existsSync(join(dist, file)), file).toBe(true);
      expect(existsSync(join(dist, `${file}.map`)), `${file}.map`).toBe(true);
    }
  });

  it("puts each service's migrations beside its bundle, and the gateway's console page", () => {
    const withMigrations = meshDeployables.filter((d) => existsSync(join(root, dirname(d.main), "migrations")));
    expect(withMigrations.map((d) => d.name).sort()).toEqual(meshDeployables.filter((d) => "schema" in d).map((d) => d.name).sort());
    for (const { name, main } of withMigrations) {
      expect(readdirSync(join(dist, name, "migrations")).sort(), name).toEqual(readdirSync(join(root, dirname(main), "migrations")).sort());
    }
    expect(readFileSync(join(dist, "gateway/web/index.html"), "utf8")).toBe(readFileSync(join(root, "gateway/web/index.html"), "utf8"));
  });

  it("prebuilds the console's script as the gateway bundles it when it runs from its sources", async () => {
    const fromSources = await build({ ...consoleScriptBuild(join(root, "gateway/web")), write: false });
    expect(readFileSync(join(dist, "gateway/web/console.js"))).toEqual(Buffer.from(fromSources.outputFiles[0]!.contents));
  });

  it("bundles nothing from tools/, tests/ or bench/, and no esbuild for the console", () => {
    for (const file of [...meshDeployables.map((d) => bundlePath(d.name)), runServicePath]) {
      const sources = sourcesOf(join(dist, file));
      expect(sources.filter((source) => devOnly.test(source)), file).toEqual([]);
      expect(sources.length, file).toBeGreaterThan(0);
    }
    for (const { name, main } of meshDeployables) expect(sourcesOf(join(dist, bundlePath(name))), name).toContain(main);
    expect(readFileSync(join(dist, bundlePath("gateway")), "utf8")).not.toMatch(/from "esbuild"|import\("esbuild"\)/);
  });

  it("would refuse a bundle holding dev code, or importing a package the image does not install", () => {
    const metafile = {
      inputs: {},
      outputs: {
        "dist/x/bin/main.js": {
          bytes: 1,
          inputs: { "services/x/main.ts": { bytesInOutput: 1 }, "tools/mesh/topology.ts": { bytesInOutput: 1 } },
          imports: [
            { path: "node:fs", kind: "import-statement", external: true },
            { path: "pino", kind: "import-statement", external: true },
            { path: "@peculiar/x509/sub", kind: "import-statement", external: true },
          ],
          exports: [],
        },
      },
    } satisfies Metafile;
    expect(productionViolations(metafile, { pino: "10.4.0" })).toEqual([
      "dist/x/bin/main.js bundles tools/mesh/topology.ts",
      "dist/x/bin/main.js imports @peculiar/x509/sub, which is not among package.json's dependencies",
    ]);
  });

  it("bundles the legacy old shop from its own folder alone, none of the mesh's code", () => {
    const sources = sourcesOf(join(dist, bundlePath("oldshop")));
    expect(sources).toContain("legacy/oldshop/main.ts");
    expect(sources.filter((source) => !source.startsWith("legacy/oldshop/"))).toEqual([]);
  });

  it("would refuse a legacy deployable's bundle holding the mesh's code", () => {
    const output = (inputs: string[]) => ({ bytes: 1, inputs: Object.fromEntries(inputs.map((input) => [input, { bytesInOutput: 1 }])), imports: [], exports: [] });
    const metafile = {
      inputs: {},
      outputs: {
        "dist/oldshop/bin/main.js": output(["legacy/oldshop/main.ts", "services/platform/index.ts", "gen/shop/catalog/v1/catalog_pb.ts"]),
        "dist/inventory/bin/main.js": output(["services/inventory/main.ts", "services/platform/index.ts"]),
      },
    } satisfies Metafile;
    expect(legacyViolations(metafile, ["oldshop"])).toEqual([
      "dist/oldshop/bin/main.js is a legacy deployable's, yet bundles services/platform/index.ts",
      "dist/oldshop/bin/main.js is a legacy deployable's, yet bundles gen/shop/catalog/v1/catalog_pb.ts",
    ]);
  });

  it("records what it read, so a launcher tells a stale build from a fresh one", () => {
    expect(inputs).toContain("services/inventory/main.ts");
    expect(inputs).toContain("services/inventory/migrations/meta/_journal.json");
    expect(staleBuild(dist)).toBeUndefined();
    expect(inputs).toEqual(expect.arrayContaining(["package.json", "tsconfig.json"]));
    const record = join(dist, buildRecordPath);
    const written = readFileSync(record, "utf8");
    // As if the build had begun before every source was last written.
    writeFileSync(record, JSON.stringify({ ...JSON.parse(written), startedAt: 0 }));
    expect(staleBuild(dist)).toMatch(/ changed since it was built$/);
    writeFileSync(record, written);
    expect(staleBuild(join(dist, "nowhere"))).toMatch(/holds no build$/);
  });

  it("reads only files that the image's build stage copies in", () => {
    const dockerfile = readFileSync(join(root, "deploy/Dockerfile"), "utf8");
    const buildStage = dockerfile.slice(0, dockerfile.indexOf("RUN npm run build"));
    const copied = [...buildStage.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(" "));
    const fromSources = inputs.filter((input) => !/(^|\/)node_modules\//.test(input)); // the console's packages: npm ci installs them
    expect(fromSources.length).toBeGreaterThan(0);
    expect(fromSources.filter((input) => !copied.some((path) => input === path || input.startsWith(`${path.replace(/\/$/, "")}/`)))).toEqual([]);
  });
});

describe("a compiled deployable", () => {
  it("starts from dist/run-service.js, with no tsx, and answers grpc.health.v1 SERVING; the gateway serves its prebuilt console", async () => {
    const [databases, nats, pki] = await Promise.all([createServiceDatabases(), startTestNats(), testPki()]);
    const all = withOwnCredentials(await meshOnFreePorts(), {
      databaseUrl: (name) => databases.urls[name as DatabaseService],
      natsUrl: nats.urlFor,
      tls: pki.files,
      gatewayAuthSecret: testAuthSecret,
    });
    const started = all.filter((s) => s.name === "inventory" || s.name === "gateway");
    const output: string[] = [];
    const supervisor = createSupervisor(started, {
      env: childEnv({ ...process.env, ...portEnv(all), LOG_LEVEL: "warn" }, all),
      log: (line) => output.push(line),
      runtime: { kind: "compiled", distDir: dist },
    });
    const probes = started.map((s) => createHealthProbe(`http://127.0.0.1:${s.opsPort}`));
    try {
      supervisor.start();
      await supervisor.waitUntilServing(20_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${output.slice(-20).join("\n")}`);
      });
      expect(await Promise.all(probes.map((probe) => probe.check()))).toEqual(["SERVING", "SERVING"]);
      for (const { name } of started) {
        const commandLine = readFileSync(`/proc/${supervisor.pid(name)}/cmdline`, "utf8").split("\0");
        expect(commandLine.slice(1, 3 + compiledNodeFlags.length), name).toEqual([...compiledNodeFlags, join(dist, runServicePath), name]);
        expect(commandLine.filter((arg) => /tsx|\.ts$/.test(arg)), name).toEqual([]);
      }
      const gateway = started.find((s) => s.name === "gateway")!;
      const script = await fetch(`http://127.0.0.1:${gateway.port}/console.js`);
      expect(script.status).toBe(200);
      expect(await script.text()).toBe(readFileSync(join(dist, "gateway/web/console.js"), "utf8"));
    } finally {
      for (const probe of probes) probe.close();
      await supervisor.stop(5_000);
      await nats.stop();
    }
  });
});

describe("the compiled old shop (a legacy deployable)", () => {
  it("starts from dist/run-service.js with its DATABASE_URL and certificate, answers GET /healthz on its ops port, and serves its JSON over mTLS", async () => {
    const [database, pki, port, opsPort] = await Promise.all([createLegacyDatabase(), testPki(), freePort(), freePort()]);
    const own = pki.files("oldshop");
    const output: string[] = [];
    // As the image starts it: node, the compiled runtime's flags, the production entry.
    const child = spawn(process.execPath, [...compiledNodeFlags, join(dist, runServicePath), "oldshop"], {
      env: {
        PATH: process.env["PATH"],
        LOG_LEVEL: "warn",
        HOST: "127.0.0.1",
        OLDSHOP_PORT: String(port),
        OPS_PORT: String(opsPort),
        DATABASE_URL: database.oldshopUrl,
        TLS_CERT_FILE: own.certFile,
        TLS_KEY_FILE: own.keyFile,
        TLS_CA_FILE: own.caFile,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const stream of [child.stdout!, child.stderr!]) stream.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk));
    const exited = new Promise<void>((done) => child.once("exit", () => done()));
    try {
      const health = await eventually(async () => {
        const response = await fetch(`http://127.0.0.1:${opsPort}/healthz`);
        expect(response.status, output.join("")).toBe(200);
        return response.json();
      }, 20_000);
      expect(health).toEqual({ status: "SERVING" });
      const commandLine = readFileSync(`/proc/${child.pid}/cmdline`, "utf8").split("\0");
      expect(commandLine.filter((arg) => /tsx|\.ts$/.test(arg))).toEqual([]);
      // A caller the manifest names (order), with its own certificate.
      const caller = pki.files("order");
      const products = await new Promise<{ status: number; body: string }>((done, fail) => {
        const req = request(
          { host: "127.0.0.1", port, path: "/api/products", servername: "oldshop", ca: readFileSync(caller.caFile), cert: readFileSync(caller.certFile), key: readFileSync(caller.keyFile), checkServerIdentity: (_host, peer) => (peer.subjectaltname?.includes("URI:spiffe://meshwork/oldshop") ? undefined : new Error("not the old shop's certificate")) },
          (res) => {
            let body = "";
            res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
            res.on("end", () => done({ status: res.statusCode!, body }));
          },
        );
        req.on("error", fail);
        req.end();
      });
      expect(products.status, products.body).toBe(200);
      expect((JSON.parse(products.body) as { products: { sku: string }[] }).products.length).toBeGreaterThan(0);
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  });
});
