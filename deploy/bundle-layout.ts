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

/**
 * Node's flags for the compiled runtime, wherever it starts (the image's entry point, the
 * launchers). A young generation capped at 4 MiB semi-spaces (V8's default lets them grow to
 * 16): idle resident memory drops from 83–93 MiB per service to 77–83, under the 90 MiB budget,
 * while CPU per order stayed within the noise (whole mesh 92.4 ms against 92.7, medians of 3
 * alternating rounds of bench/cost-per-order.ts).
 */
export const compiledNodeFlags = ["--max-semi-space-size=4"] as const;

/** The production entry: `node dist/run-service.js <name>` starts that deployable's bundle. */
export const runServicePath = "run-service.js";

/** What the build read (sources and copied files) and when, for telling a stale build from a fresh one. */
export const buildRecordPath = "build.json";
