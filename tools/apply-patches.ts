/**
 * Applies the committed fixes in patches/ to installed packages; npm runs it as the root
 * package's postinstall, so every `npm install` and `npm ci` ends with patched packages.
 *
 * A patch is named `<package>+<version>.patch` (a scoped package is `@scope+name+version`)
 * and is a unified diff with paths relative to the package's folder (`a/src/x.js`). It is
 * applied here in plain TypeScript, not with `git apply` or `patch`, because the Docker
 * build stage that runs `npm ci` has neither.
 *
 * Running it again is harmless: a patch already in place is left alone. Anything else fails
 * the install loudly: a different installed version (upstream may have fixed the bug, or
 * moved the code), or source that no longer matches the diff's context. Then rework or
 * delete the patch; never let an install continue with the fix silently missing.
 */
import { readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

interface Hunk {
  /** Lines the diff expects now: context and removed lines. */
  before: string;
  /** The same span once patched: context and added lines. */
  after: string;
}

interface FilePatch {
  path: string;
  hunks: Hunk[];
}

export type PatchOutcome = "applied" | "already applied";

/** Splits a unified diff into its files and hunks. */
export function parseUnifiedDiff(diff: string): FilePatch[] {
  const files: FilePatch[] = [];
  let hunk: { before: string[]; after: string[] } | undefined;
  const closeHunk = () => {
    if (hunk) files.at(-1)!.hunks.push({ before: hunk.before.join(""), after: hunk.after.join("") });
    hunk = undefined;
  };
  for (const line of diff.split(/(?<=\n)/)) {
    if (line.startsWith("--- ")) {
      closeHunk();
      continue;
    }
    if (line.startsWith("+++ ")) {
      files.push({ path: line.slice(4).trim().replace(/^b\//, ""), hunks: [] });
      continue;
    }
    if (line.startsWith("@@")) {
      if (!files.length) throw new Error("hunk before any +++ file header");
      closeHunk();
      hunk = { before: [], after: [] };
      continue;
    }
    if (!hunk) continue; // headers such as "diff --git", "index"
    const body = line.slice(1);
    if (line.startsWith(" ") || line === "\n") {
      hunk.before.push(line === "\n" ? "\n" : body);
      hunk.after.push(line === "\n" ? "\n" : body);
    } else if (line.startsWith("-")) hunk.before.push(body);
    else if (line.startsWith("+")) hunk.after.push(body);
    else if (!line.startsWith("\\")) throw new Error(`unexpected diff line: ${JSON.stringify(line)}`);
  }
  closeHunk();
  return files;
}

const occurrences = (text: string, part: string) => text.split(part).length - 1;

/**
 * Applies one file's hunks to its text. Each hunk's span must occur exactly once, so a
 * patch never lands in the wrong place; if every patched span is already there instead,
 * the file was patched before.
 */
export function patchText(text: string, file: FilePatch): { text: string; outcome: PatchOutcome } {
  if (file.hunks.every((hunk) => occurrences(text, hunk.after) === 1 && occurrences(text, hunk.before) === 0)) {
    return { text, outcome: "already applied" };
  }
  let patched = text;
  for (const [index, hunk] of file.hunks.entries()) {
    const found = occurrences(patched, hunk.before);
    if (found !== 1) {
      throw new Error(`${file.path}: hunk ${index + 1} matches ${found} places instead of exactly one; the package's source changed`);
    }
    patched = patched.replace(hunk.before, () => hunk.after);
  }
  return { text: patched, outcome: "applied" };
}

/** `postgres+3.4.9.patch` → postgres 3.4.9; `@scope+pkg+1.0.0.patch` → @scope/pkg 1.0.0. */
function packageOf(patchName: string): { name: string; version: string } {
  const parts = patchName.replace(/\.patch$/, "").split("+");
  const version = parts.pop();
  if (!version || !parts.length) throw new Error(`${patchName}: expected <package>+<version>.patch`);
  return { name: parts.join("/"), version };
}

/** Applies every patch in `patchesDir` to the packages under `nodeModules`. */
export function applyPatches(patchesDir: string, nodeModules: string, log: (line: string) => void): void {
  for (const patchName of readdirSync(patchesDir).filter((name) => name.endsWith(".patch")).sort()) {
    const { name, version } = packageOf(patchName);
    const packageDir = join(nodeModules, name);
    const installed = (JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")) as { version?: string }).version;
    if (installed !== version) {
      throw new Error(
        `patches/${patchName} fixes ${name} ${version}, but ${name} ${installed} is installed: ` +
          `check whether this release fixes the bug upstream, then rework or delete the patch`,
      );
    }
    const files = parseUnifiedDiff(readFileSync(join(patchesDir, patchName), "utf8"));
    if (!files.length) throw new Error(`patches/${patchName} contains no file changes`);
    // Every file is checked before any is written, so a failing patch leaves the package as it was.
    const results = files.map((file) => ({ file, ...patchText(readFileSync(join(packageDir, file.path), "utf8"), file) }));
    for (const { file, text, outcome } of results) {
      if (outcome !== "applied") continue;
      const target = join(packageDir, file.path);
      writeFileSync(`${target}.patching`, text);
      renameSync(`${target}.patching`, target);
    }
    log(`patches/${patchName}: ${results.map(({ file, outcome }) => `${file.path} ${outcome}`).join(", ")}`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(import.meta.dirname, "..");
  try {
    applyPatches(join(root, "patches"), join(root, "node_modules"), (line) => console.log(line));
  } catch (err) {
    console.error(`apply-patches: ${(err as Error).message}`);
    process.exit(1);
  }
}
