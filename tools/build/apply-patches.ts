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

/**
 * Splits a unified diff into its files and hunks. A hunk is read by the line counts in its
 * `@@ -a,b +c,d @@` header, so a removed line that reads `--- x` or an added one that reads
 * `+++ x` stays part of the hunk; only outside a hunk do such lines name a file.
 */
export function parseUnifiedDiff(diff: string): FilePatch[] {
  const files: FilePatch[] = [];
  const lines = diff.split(/(?<=\n)/);
  for (let at = 0; at < lines.length; ) {
    const line = lines[at++]!;
    if (line.startsWith("+++ ")) {
      files.push({ path: line.slice(4).trim().replace(/^b\//, ""), hunks: [] });
      continue;
    }
    if (!line.startsWith("@@")) continue; // "--- a/…", "diff --git", "index", a preamble
    const file = files.at(-1);
    if (!file) throw new Error("hunk before any +++ file header");
    const counts = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(line);
    if (!counts) throw new Error(`${file.path}: malformed hunk header ${JSON.stringify(line)}`);
    let [removing, adding] = [Number(counts[1] ?? 1), Number(counts[2] ?? 1)];
    const before: string[] = [];
    const after: string[] = [];
    let last: string[][] = [];
    while (removing > 0 || adding > 0) {
      const body = lines[at++];
      if (body === undefined) throw new Error(`${file.path}: hunk ${file.hunks.length + 1} ends before its ${line.trim()} header says`);
      // A context line; some editors strip its leading space when the line is empty.
      if (body.startsWith(" ") || body === "\n") {
        const text = body === "\n" ? body : body.slice(1);
        before.push(text);
        after.push(text);
        last = [before, after];
        removing--;
        adding--;
      } else if (body.startsWith("-")) {
        before.push(body.slice(1));
        last = [before];
        removing--;
      } else if (body.startsWith("+")) {
        after.push(body.slice(1));
        last = [after];
        adding--;
      } else {
        throw new Error(`${file.path}: unexpected line in hunk ${file.hunks.length + 1}: ${JSON.stringify(body)}`);
      }
      if (removing < 0 || adding < 0) throw new Error(`${file.path}: hunk ${file.hunks.length + 1} has more lines than its ${line.trim()} header says`);
      // "\ No newline at end of file" after a line: that line (on its side) has no newline.
      if (lines[at]?.startsWith("\\")) {
        at++;
        for (const side of last) side[side.length - 1] = side.at(-1)!.replace(/\n$/, "");
      }
    }
    file.hunks.push({ before: before.join(""), after: after.join("") });
  }
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
  const root = resolve(import.meta.dirname, "../..");
  try {
    applyPatches(join(root, "patches"), join(root, "node_modules"), (line) => console.log(line));
  } catch (err) {
    console.error(`apply-patches: ${(err as Error).message}`);
    process.exit(1);
  }
}
