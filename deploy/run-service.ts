/**
 * The container's entry point, compiled by `npm run build` to dist/run-service.js:
 * `node dist/run-service.js <name>` starts one deployable of the manifest from its bundle,
 * so a single image serves every service (`docker run meshwork order`), the legacy old shop
 * too, whose bundle is its own code alone (it reads DATABASE_URL, its port, OPS_PORT and the
 * TLS files, and answers GET /healthz rather than grpc.health.v1). It runs only from
 * dist/, never under tsx: `npm start` and `npm run service` run the sources, unless
 * NODE_ENV=production, when they start this too.
 *
 * Stack traces name the bundle's lines, which esbuild heads with the source file each came
 * from; NODE_OPTIONS=--enable-source-maps maps them to the TypeScript, at 4 to 10 MiB more
 * resident memory per process, which is why it is not the default.
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { meshDeployables } from "#mesh";
import { bundlePath } from "./bundle-layout.js";

const name = process.argv[2] ?? "";
const deployable = meshDeployables.find((d) => d.name === name);
if (!deployable) {
  console.error(`usage: run-service.js <${meshDeployables.map((d) => d.name).join("|")}>`);
  process.exit(2);
}
await import(pathToFileURL(join(import.meta.dirname, bundlePath(deployable.name))).href);
