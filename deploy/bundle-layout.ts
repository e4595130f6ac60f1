/**
 * Where `npm run build` (tools/build/bundle.ts) puts the compiled runtime, relative to its
 * output folder (dist/), for the production entry, the launchers and the tests to agree on.
 *
 * Each deployable gets a folder of its own: its bundle, and beside it what it reads at run
 * time (its migrations/, the gateway's web/). The bundle stands one level below that folder,
 * in bin/, because the code it was made from resolves those as `../migrations` and `../web`
 * from its src/ folder, and a bundle's `import.meta.dirname` is its own.
 */

/** A deployable's bundle, e.g. `inventory/bin/main.js`. */
export const bundlePath = (name: string) => `${name}/bin/main.js`;

/** The production entry: `node dist/run-service.js <name>` starts that deployable's bundle. */
export const runServicePath = "run-service.js";

/** What the build read (sources and copied files) and when, for telling a stale build from a fresh one. */
export const buildRecordPath = "build.json";
