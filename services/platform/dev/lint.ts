/**
 * `npm run lint`: buf lint, generated code freshness, the TypeScript type check, and
 * `buf breaking` against the contracts as they were before this change.
 *
 * The breaking baseline, in order of preference:
 *   1. BUF_BREAKING_AGAINST, if set (any buf input, e.g. ".git#ref=v1.2.0").
 *   2. HEAD, when proto/ has uncommitted changes: the change under review is the work tree.
 *   3. The merge base with origin/main, when HEAD is a branch ahead of it.
 *   4. HEAD~1: on main, every commit is checked against its parent.
 * A repository with a single commit has nothing to compare against, and says so.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "../../..");
const bin = (name: string) => resolve(root, "node_modules/.bin", name);

function git(...args: string[]): string | undefined {
  const r = spawnSync("git", args, { cwd: root, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function breakingBaseline(): { against: string; why: string } | undefined {
  const explicit = process.env["BUF_BREAKING_AGAINST"];
  if (explicit) return { against: explicit, why: "BUF_BREAKING_AGAINST" };
  if (git("rev-parse", "--verify", "-q", "HEAD") === undefined) return undefined;
  if (git("status", "--porcelain", "--", "proto")) return { against: ".git#ref=HEAD", why: "uncommitted proto/ changes vs HEAD" };
  const head = git("rev-parse", "HEAD");
  const mergeBase = git("merge-base", "HEAD", "origin/main");
  if (mergeBase && mergeBase !== head) return { against: `.git#ref=${mergeBase}`, why: "merge base with origin/main" };
  const parent = git("rev-parse", "--verify", "-q", "HEAD~1");
  if (parent) return { against: `.git#ref=${parent}`, why: "HEAD~1" };
  return undefined;
}

function run(title: string, cmd: string, args: string[]): void {
  console.log(`\n== ${title}`);
  execFileSync(cmd, args, { cwd: root, stdio: "inherit" });
}

run("buf lint", bin("buf"), ["lint"]);
run("generated code is fresh", bin("tsx"), ["services/platform/dev/generate.ts", "--check"]);
run("typescript", bin("tsc"), ["-p", "tsconfig.json"]);

const baseline = breakingBaseline();
if (!baseline) {
  console.log("\n== buf breaking: no earlier commit to compare against; skipped");
} else {
  // A baseline from before buf.yaml existed has no contracts to break.
  const ref = /ref=([^,]+)/.exec(baseline.against)?.[1];
  if (ref && git("cat-file", "-e", `${ref}:buf.yaml`) === undefined) {
    console.log(`\n== buf breaking: ${ref} has no buf.yaml; nothing to compare`);
  } else {
    run(`buf breaking against ${baseline.against} (${baseline.why})`, bin("buf"), ["breaking", "--against", baseline.against]);
  }
}
