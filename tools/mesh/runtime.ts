/**
 * How the launchers run a service: its TypeScript sources under the tsx loader (the edit
 * loop, the default), or, under NODE_ENV=production, the compiled runtime `npm run build`
 * makes, started as the image starts it: `node dist/run-service.js <name>`.
 */
import { join } from "node:path";
import type { Env } from "#platform/process/config.js";
import { compiledNodeFlags, runServicePath } from "#deploy/bundle-layout.js";
import { bundleMesh, defaultDistDir, staleBuild } from "../build/bundle.js";
import { repoRoot } from "./local-infra.js";
import type { MeshService } from "./topology.js";

export type MeshRuntime = { kind: "sources" } | { kind: "compiled"; distDir: string };

export const meshRuntime = (env: Env): MeshRuntime => (env["NODE_ENV"] === "production" ? { kind: "compiled", distDir: defaultDistDir } : { kind: "sources" });

/** The node arguments that start `service` under `runtime`. */
export function launchArgs(service: Pick<MeshService, "name" | "main">, runtime: MeshRuntime): string[] {
  return runtime.kind === "compiled" ? [...compiledNodeFlags, join(runtime.distDir, runServicePath), service.name] : ["--import", "tsx", join(repoRoot, service.main)];
}

/** For a launcher that cannot wait for a build: fails at once, saying why, rather than start stale code. */
export function assertBuilt(runtime: MeshRuntime): void {
  if (runtime.kind !== "compiled") return;
  const stale = staleBuild(runtime.distDir);
  if (stale) throw new Error(`NODE_ENV=production runs the compiled runtime, but ${stale}: run npm run build`);
}

/** Builds the compiled runtime first if it is missing or older than its sources. */
export async function ensureBuilt(runtime: MeshRuntime, log: (line: string) => void): Promise<void> {
  if (runtime.kind !== "compiled") return;
  const stale = staleBuild(runtime.distDir);
  if (!stale) return;
  log(`building the compiled runtime (${stale})`);
  await bundleMesh(runtime.distDir);
}
