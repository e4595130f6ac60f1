import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { build } from "esbuild";
import type { NodeRequest, NodeResponse } from "#platform";

const webRoot = resolve(import.meta.dirname, "../web");

/**
 * The console's page and its script, bundled from gateway/web with esbuild when the gateway
 * starts (a fraction of a second), so there is no build step to forget.
 */
export async function loadConsoleAssets(): Promise<(req: NodeRequest, res: NodeResponse) => void> {
  const [html, bundle] = await Promise.all([
    readFile(resolve(webRoot, "index.html")),
    build({ entryPoints: [resolve(webRoot, "console.ts")], bundle: true, write: false, format: "esm", target: "es2022", minify: true, logLevel: "silent" }),
  ]);
  const assets = new Map<string, { body: Uint8Array; type: string }>([
    ["/", { body: html, type: "text/html; charset=utf-8" }],
    ["/console.js", { body: bundle.outputFiles[0]!.contents, type: "text/javascript; charset=utf-8" }],
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
