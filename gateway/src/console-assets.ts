import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { BuildOptions } from "esbuild";
import type { NodeRequest, NodeResponse } from "#platform";

declare global {
  /** Defined (true) by `npm run build` in the production bundles; undeclared when the sources run under tsx. */
  const MESHWORK_BUNDLED: true;
}

const webRoot = resolve(import.meta.dirname, "../web");

/** A page of the console and its browser script, both in web/: served at / and /<script>.js. */
export interface ConsolePage {
  html: string;
  /** The script's name without extension: web/<script>.ts, bundled to web/<script>.js. */
  script: string;
}

/** The customers' console, on the public port. */
export const storefrontPage: ConsolePage = { html: "index.html", script: "console" };
/** The operators' console, on the operator listener alone. */
export const operatorPage: ConsolePage = { html: "operator.html", script: "operator" };
/** Every page, for `npm run build` to prebuild. */
export const consolePages = [storefrontPage, operatorPage] as const;

/** A page's browser script, as esbuild bundles it from `web/<script>.ts` into `web/<script>.js`. Stylesheets (uPlot's) come in as text. */
export const consoleScriptBuild = (web: string, page: ConsolePage = storefrontPage) =>
  ({ entryPoints: [resolve(web, `${page.script}.ts`)], bundle: true, format: "esm", target: "es2022", minify: true, logLevel: "silent", loader: { ".css": "text" } }) satisfies BuildOptions;

/**
 * The script: in a production bundle, the one `npm run build` wrote beside the page; from
 * the sources, bundled when the gateway starts (a fraction of a second), so the edit loop has
 * no build step to forget. The bundles drop the else branch (MESHWORK_BUNDLED is a constant
 * there), and with it the import of esbuild, a dev dependency.
 */
async function consoleScript(page: ConsolePage): Promise<Uint8Array> {
  if (typeof MESHWORK_BUNDLED !== "undefined") {
    return readFile(resolve(webRoot, `${page.script}.js`));
  } else {
    const { build } = await import("esbuild");
    const bundle = await build({ ...consoleScriptBuild(webRoot, page), write: false });
    return bundle.outputFiles[0]!.contents;
  }
}

/**
 * What every console response carries. The pages load only their own script, call only their
 * own origin and are framed by no one (no clickjacking of Retry or Compensate);
 * 'unsafe-inline' styles for the pages' style attributes, the stylesheet the script adds and
 * uPlot's. No MIME sniffing, and no referrer: the operator page's address may still hold its
 * token for the moment before the script moves it out.
 */
const consoleSecurityHeaders = {
  "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
} as const;

/** A console page and its script, served to GET and HEAD; anything else is 404. */
export async function loadConsoleAssets(page: ConsolePage = storefrontPage): Promise<(req: NodeRequest, res: NodeResponse) => void> {
  const [html, script] = await Promise.all([readFile(resolve(webRoot, page.html)), consoleScript(page)]);
  const assets = new Map<string, { body: Uint8Array; type: string }>([
    ["/", { body: html, type: "text/html; charset=utf-8" }],
    [`/${page.script}.js`, { body: script, type: "text/javascript; charset=utf-8" }],
  ]);
  return (req, res) => {
    const asset = req.method === "GET" || req.method === "HEAD" ? assets.get(req.url?.split("?", 1)[0] ?? "") : undefined;
    if (!asset) {
      res.writeHead(404, { "content-type": "text/plain", ...consoleSecurityHeaders });
      res.end("not found");
      return;
    }
    res.writeHead(200, { "content-type": asset.type, "content-length": String(asset.body.byteLength), "cache-control": "no-cache", ...consoleSecurityHeaders });
    if (req.method === "HEAD") res.end();
    else res.end(asset.body);
  };
}
