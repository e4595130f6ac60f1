import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { BuildOptions } from "esbuild";
import type { NodeRequest, NodeResponse } from "#platform";

declare global {
  /** Defined (true) by `npm run build` in the production bundles; undeclared when the sources run under tsx. */
  const MESHWORK_BUNDLED: true;
}

const webRoot = resolve(import.meta.dirname, "../web");

/** The console's browser script, as esbuild bundles it from `web/console.ts` into `web/console.js`. */
export const consoleScriptBuild = (web: string) =>
  ({ entryPoints: [resolve(web, "console.ts")], bundle: true, format: "esm", target: "es2022", minify: true, logLevel: "silent" }) satisfies BuildOptions;

/**
 * The script: in a production bundle, the one `npm run build` wrote beside index.html; from
 * the sources, bundled when the gateway starts (a fraction of a second), so the edit loop has
 * no build step to forget. The bundles drop the else branch (MESHWORK_BUNDLED is a constant
 * there), and with it the import of esbuild, a dev dependency.
 */
async function consoleScript(): Promise<Uint8Array> {
  if (typeof MESHWORK_BUNDLED !== "undefined") {
    return readFile(resolve(webRoot, "console.js"));
  } else {
    const { build } = await import("esbuild");
    const bundle = await build({ ...consoleScriptBuild(webRoot), write: false });
    return bundle.outputFiles[0]!.contents;
  }
}

/** The console's page and its script. */
export async function loadConsoleAssets(): Promise<(req: NodeRequest, res: NodeResponse) => void> {
  const [html, script] = await Promise.all([readFile(resolve(webRoot, "index.html")), consoleScript()]);
  const assets = new Map<string, { body: Uint8Array; type: string }>([
    ["/", { body: html, type: "text/html; charset=utf-8" }],
    ["/console.js", { body: script, type: "text/javascript; charset=utf-8" }],
  ]);
  return (req, res) => {
    const asset = req.method === "GET" || req.method === "HEAD" ? assets.get(req.url?.split("?", 1)[0] ?? "") : undefined;
    if (!asset) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
      return;
    }
    res.writeHead(200, { "content-type": asset.type, "content-length": String(asset.body.byteLength), "cache-control": "no-cache" });
    if (req.method === "HEAD") res.end();
    else res.end(asset.body);
  };
}
