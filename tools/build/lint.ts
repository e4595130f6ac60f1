/**
 * `npm run lint`: buf lint, generated code freshness, the TypeScript type check, and
 * `buf breaking` against the contracts as they were before this change.
 *
 * The breaking baseline, in order of preference:
 *   1. BUF_BREAKING_AGAINST, if set (any buf input, e.g. ".git#ref=v1.2.0").
 *   2. HEAD, when proto/ has uncommitted changes: the change under review is the work tree.
 *   3. The merge base with origin/main, when HEAD is a branch ahead of it.
 *   4. On main: every commit that touched proto/ against its parent, so a breaking change
 *      buried under later commits of one push is still caught. A handful of buf runs.
 * A repository with a single commit has nothing to compare against, and says so.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");
const bin = (name: string) => resolve(root, "node_modules/.bin", name);

function git(...args: string[]): string | undefined {
  const r = spawnSync("git", args, { cwd: root, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

interface Comparison {
  input: string;
  against: string;
  why: string;
}

function breakingComparisons(): Comparison[] {
  const explicit = process.env["BUF_BREAKING_AGAINST"];
  if (explicit) return [{ input: ".", against: explicit, why: "BUF_BREAKING_AGAINST" }];
  if (git("rev-parse", "--verify", "-q", "HEAD") === undefined) return [];
  if (git("status", "--porcelain", "--", "proto")) return [{ input: ".", against: ".git#ref=HEAD", why: "uncommitted proto/ changes vs HEAD" }];
  const head = git("rev-parse", "HEAD");
  const mergeBase = git("merge-base", "HEAD", "origin/main");
  if (mergeBase && mergeBase !== head) return [{ input: ".", against: `.git#ref=${mergeBase}`, why: "merge base with origin/main" }];
  const touched = (git("log", "--format=%H", "--", "proto") ?? "").split("\n").filter(Boolean);
  // buf clones with depth 50 by default; an older commit's parent would be out of reach.
  const depth = Number(git("rev-list", "--count", "HEAD") ?? 0) + 1;
  return touched
    .filter((commit) => git("cat-file", "-e", `${commit}~1:buf.yaml`) !== undefined) // a parent with contracts to break
    .map((commit) => ({ input: `.git#ref=${commit},depth=${depth}`, against: `.git#ref=${commit}~1,depth=${depth}`, why: `commit ${commit.slice(0, 12)} vs its parent` }));
}

function run(title: string, cmd: string, args: string[]): void {
  console.log(`\n== ${title}`);
  execFileSync(cmd, args, { cwd: root, stdio: "inherit" });
}

// Contracts first: a breaking change is the most important thing to report.
run("buf lint", bin("buf"), ["lint"]);
const comparisons = breakingComparisons();
if (comparisons.length === 0) console.log("\n== buf breaking: no earlier contracts to compare against; skipped");
for (const { input, against, why } of comparisons) run(`buf breaking (${why})`, bin("buf"), ["breaking", input, "--against", against]);
run("generated code is fresh", bin("tsx"), ["tools/build/generate.ts", "--check"]);
run("typescript", bin("tsc"), ["-p", "tsconfig.json"]);
