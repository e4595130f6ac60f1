/**
 * The container's entry point: `run-service.ts <name>` starts one deployable of the manifest,
 * so a single image serves every service (`docker run meshwork order`).
 */
import { meshDeployables } from "#mesh";

const name = process.argv[2] ?? "";
const deployable = meshDeployables.find((d) => d.name === name);
if (!deployable) {
  console.error(`usage: run-service.ts <${meshDeployables.map((d) => d.name).join("|")}>`);
  process.exit(2);
}
await import(new URL(`../${deployable.main}`, import.meta.url).href);
