/**
 * `npm run build`: the compiled runtime the image runs, under dist/ (see deploy/bundle-layout.ts).
 * esbuild bundles each deployable of the manifest, from its main.ts, into one ESM file for
 * Node with a source map, npm packages left as imports of node_modules; and the production
 * entry, deploy/run-service.ts. Beside each bundle go the files it reads at run time: its
 * drizzle migrations, and the gateway's console page with its script, prebuilt.
 *
 * The build fails if a bundle holds anything from tools/, tests/ or bench/, or imports a
 * package that is not a production dependency (the image installs no others), or if a legacy
 * deployable's bundle (the strangler fig's old app) holds any of the mesh's code, or if esbuild
 * warns. `dist/build.json` records every file the build read, so a launcher can tell a stale
 * build (`staleBuild`).
 *
 * Run: npm run build [-- <outdir>]
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { isBuiltin } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Message, type Metafile, type Plugin } from "esbuild";
import { meshDeployables, type Deployable } from "#mesh";
import { buildRecordPath, bundlePath, runServicePath } from "#deploy/bundle-layout.js";
import { consolePages, consoleScriptBuild } from "#gateway/src/console-assets.js";

const repoRoot = resolve(import.meta.dirname, "../..");
export const defaultDistDir = join(repoRoot, "dist");

/** Development code, which must never reach a production bundle. */
const devOnlyFolders = ["tools/", "tests/", "bench/"];

/** The mesh's own code, which a legacy deployable stands apart from (services/mesh.ts, `legacy`). */
const meshFolders = ["services/", "gen/", "gateway/", "deploy/"];

/** What a deployable reads at run time from its own folder (main.ts's), copied beside its bundle. */
const runtimeFiles = ["migrations", ...consolePages.map((page) => `web/${page.html}`)];
/** Where a deployable's browser scripts are, each bundled to web/<script>.js (the gateway's console pages). */
const browserScripts = "web";

/** What dist/build.json holds: when the build began, and every file it read, relative to the repository. */
interface BuildRecord {
  /** A file changed after this (ms since the epoch) may be missing from the build, even one changed while it ran. */
  startedAt: number;
  inputs: string[];
}

/** Read by every build without being imported: the aliases and dependencies, and the compiler's settings. */
const projectFiles = ["package.json", "tsconfig.json"];

const resolving = Symbol("resolving");

/**
 * Marks the repository's own modules free of side effects, as `"sideEffects": false` would for
 * a package, so a module of the kit that a deployable never uses is left out whole, with the
 * packages it imports: the gateway then loads no database driver. esbuild warns (which fails
 * the build) if that drops an import kept for its side effects alone.
 */
const sourcesWithoutSideEffects: Plugin = {
  name: "sources-without-side-effects",
  setup(build) {
    build.onResolve({ filter: /^[.#]/ }, async ({ path, kind, importer, resolveDir, pluginData }) => {
      if (pluginData === resolving) return undefined;
      const resolved = await build.resolve(path, { kind, importer, resolveDir, pluginData: resolving });
      if (resolved.errors.length) return { errors: resolved.errors };
      return { path: resolved.path, namespace: resolved.namespace, external: resolved.external, sideEffects: false };
    });
  },
};

const withoutJs = (path: string) => path.replace(/\.js$/, "");

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
const packageOf = (specifier: string) => specifier.split("/").slice(0, specifier.startsWith("@") ? 2 : 1).join("/");

/** Bundles that break the rules of production code: dev code inside, or a package the image does not install. */
export function productionViolations(metafile: Metafile, dependencies: Record<string, string>): string[] {
  const violations: string[] = [];
  for (const [output, { inputs, imports }] of Object.entries(metafile.outputs)) {
    if (output.endsWith(".map")) continue;
    for (const input of Object.keys(inputs)) if (devOnlyFolders.some((folder) => input.startsWith(folder))) violations.push(`${output} bundles ${input}`);
    for (const { path, external } of imports) {
      if (external && !isBuiltin(path) && !(packageOf(path) in dependencies)) violations.push(`${output} imports ${path}, which is not among package.json's dependencies`);
    }
  }
  return violations;
}

/** Legacy deployables' bundles (by name) that hold the mesh's code: the old app must run without it. */
export function legacyViolations(metafile: Metafile, legacyNames: readonly string[]): string[] {
  const legacyBundles = legacyNames.map((name) => `/${bundlePath(name)}`);
  return Object.entries(metafile.outputs)
    .filter(([output]) => legacyBundles.some((bundle) => `/${output}`.endsWith(bundle)))
    .flatMap(([output, { inputs }]) => Object.keys(inputs).filter((input) => meshFolders.some((folder) => input.startsWith(folder))).map((input) => `${output} is a legacy deployable's, yet bundles ${input}`));
}

function failOnMessages(what: string, warnings: Message[]): void {
  if (warnings.length) throw new Error(`${what}: esbuild warned: ${warnings.map((w) => `${w.location?.file ?? ""}:${w.location?.line ?? ""} ${w.text}`).join("; ")}`);
}

/** Every file under `path` (itself, if a file), and the folders on the way, whose times change when a file is added or removed. */
function filesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return [path, ...readdirSync(path).flatMap((entry) => filesUnder(join(path, entry)))];
}

/**
 * Builds the compiled runtime into `finalDir`, replacing what was there only once the build has
 * succeeded, so a running compiled mesh that restarts a service never finds half a build.
 * Returns the files it read.
 */
export async function bundleMesh(finalDir = defaultDistDir): Promise<string[]> {
  const startedAt = Date.now();
  const outdir = `${finalDir}.building-${process.pid}`;
  rmSync(outdir, { recursive: true, force: true });
  try {
    const inputs = await bundleInto(outdir);
    writeFileSync(join(outdir, buildRecordPath), `${JSON.stringify({ startedAt, inputs } satisfies BuildRecord, null, 2)}\n`);
    rmSync(finalDir, { recursive: true, force: true });
    renameSync(outdir, finalDir);
    return inputs;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

async function bundleInto(outdir: string): Promise<string[]> {
  const { dependencies } = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { dependencies: Record<string, string> };
  const servers = await build({
    absWorkingDir: repoRoot,
    entryPoints: [
      ...meshDeployables.map((d) => ({ in: d.main, out: withoutJs(bundlePath(d.name)) })),
      { in: "deploy/run-service.ts", out: withoutJs(runServicePath) },
    ],
    outdir,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: true,
    // Maps name the sources' lines for stack traces; the image holds no sources to embed.
    sourcesContent: false,
    metafile: true,
    define: { MESHWORK_BUNDLED: "true" },
    plugins: [sourcesWithoutSideEffects],
    logLevel: "silent",
  });
  failOnMessages("server bundles", servers.warnings);
  const legacy = meshDeployables.filter((d: Deployable) => d.legacy !== undefined).map((d) => d.name);
  const violations = [...productionViolations(servers.metafile, dependencies), ...legacyViolations(servers.metafile, legacy)];

  const inputs = new Set([...Object.keys(servers.metafile.inputs), relative(repoRoot, fileURLToPath(import.meta.url)), ...projectFiles]);
  for (const { name, main } of meshDeployables) {
    const from = join(repoRoot, dirname(main));
    const to = join(outdir, name);
    for (const file of runtimeFiles.filter((f) => existsSync(join(from, f)))) {
      cpSync(join(from, file), join(to, file), { recursive: true });
      for (const copied of filesUnder(join(from, file))) inputs.add(relative(repoRoot, copied));
    }
    const web = join(from, browserScripts);
    for (const page of consolePages.filter((p) => existsSync(join(web, `${p.script}.ts`)))) {
      mkdirSync(join(to, browserScripts), { recursive: true });
      const script = await build({ ...consoleScriptBuild(web, page), absWorkingDir: repoRoot, outfile: join(to, browserScripts, `${page.script}.js`), metafile: true });
      failOnMessages(`${name}'s ${browserScripts}/${page.script}.ts`, script.warnings);
      violations.push(...productionViolations(script.metafile, dependencies));
      for (const input of Object.keys(script.metafile.inputs)) inputs.add(input);
    }
  }
  if (violations.length) throw new Error(`not fit for production:\n  ${violations.join("\n  ")}`);
  return [...inputs].sort();
}

/** Why the build in `outdir` does not match the sources (missing, or a file it read changed since), or undefined if it does. */
export function staleBuild(outdir = defaultDistDir): string | undefined {
  const recordFile = join(outdir, buildRecordPath);
  if (!existsSync(recordFile)) return `${relative(repoRoot, outdir) || outdir} holds no build`;
  const { startedAt, inputs } = JSON.parse(readFileSync(recordFile, "utf8")) as BuildRecord;
  for (const input of inputs) {
    const changedAt = statSync(join(repoRoot, input), { throwIfNoEntry: false })?.mtimeMs;
    if (changedAt === undefined) return `${input}, which it read, is gone`;
    if (!(changedAt < startedAt)) return `${input} changed since it was built`;
  }
  return undefined;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outdir = resolve(process.argv[2] ?? defaultDistDir);
  const started = performance.now();
  try {
    const inputs = await bundleMesh(outdir);
    console.log(`build: ${meshDeployables.length} deployables and ${runServicePath} in ${relative(repoRoot, outdir) || outdir}/ from ${inputs.length} files in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    console.error(`build: ${(err as Error).message}`);
    process.exit(1);
  }
}
