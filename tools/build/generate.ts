/**
 * `npm run generate`: vendors the standard gRPC contracts we serve from the npm packages
 * that publish them (so they are never retyped), then regenerates gen/ with buf.
 * With `--check` it generates into a scratch copy and fails if gen/ or proto/ would change,
 * which is how CI catches stale generated code.
 */
import { cpSync, mkdtempSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";

const root = resolve(import.meta.dirname, "../..");
const require = createRequire(import.meta.url);

/** Standard contracts: where each lives in its npm package, and where buf expects it. */
const vendoredProtos = [
  { from: "grpc-health-check/proto/health/v1/health.proto", to: "proto/grpc/health/v1/health.proto" },
  { from: "@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto", to: "proto/grpc/reflection/v1/reflection.proto" },
  { from: "@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto", to: "proto/grpc/reflection/v1alpha/reflection.proto" },
];

function vendor(into: string): void {
  for (const { from, to } of vendoredProtos) {
    const target = join(into, to);
    mkdirSync(dirname(target), { recursive: true });
    cpSync(require.resolve(from), target);
  }
}

function bufGenerate(cwd: string): void {
  execFileSync(join(root, "node_modules/.bin/buf"), ["generate"], { cwd, stdio: "inherit" });
}

function check(): void {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-gen-"));
  try {
    for (const entry of ["proto", "buf.yaml", "buf.gen.yaml"]) cpSync(join(root, entry), join(scratch, entry), { recursive: true });
    symlinkSync(join(root, "node_modules"), join(scratch, "node_modules"));
    vendor(scratch);
    bufGenerate(scratch);
    const diff = spawnDiff(join(root, "gen"), join(scratch, "gen")) + spawnDiff(join(root, "proto"), join(scratch, "proto"));
    if (diff) {
      console.error(`gen/ or vendored protos are stale; run \`npm run generate\` and commit:\n${diff}`);
      process.exit(1);
    }
    console.log("gen/ is up to date");
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function spawnDiff(a: string, b: string): string {
  try {
    execFileSync("diff", ["-rq", a, b], { encoding: "utf8" });
    return "";
  } catch (err) {
    return (err as { stdout?: string }).stdout ?? String(err);
  }
}

if (process.argv.includes("--check")) {
  check();
} else {
  vendor(root);
  bufGenerate(root);
}
