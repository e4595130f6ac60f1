import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Deployable } from "#mesh";
import { freePortPair, insertEntry, newServiceEntry } from "./manifest-entry.js";
import { validateServiceName } from "./service-name.js";

const templateDir = join(import.meta.dirname, "template");
const TEMPLATE_SUFFIX = ".tmpl";
const MANIFEST = join("services", "mesh.ts");

/**
 * The service's files, rendered from template/: a path's `__name__` and a text's `{{name}}`,
 * `{{Name}}` and `{{NAME}}` become the name as it is, capitalized, and upper-cased.
 */
export function renderTemplates(name: string): { path: string; text: string }[] {
  const forms: Record<string, string> = { name, Name: name[0]!.toUpperCase() + name.slice(1), NAME: name.toUpperCase() };
  return readdirSync(templateDir, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(TEMPLATE_SUFFIX))
    .sort()
    .map((file) => {
      const text = readFileSync(join(templateDir, file), "utf8").replace(/\{\{(\w+)\}\}/g, (placeholder, form: string) => {
        const value = forms[form];
        if (value === undefined) throw new Error(`template ${file}: unknown placeholder ${placeholder}`);
        return value;
      });
      return { path: file.slice(0, -TEMPLATE_SUFFIX.length).replaceAll("__name__", name), text };
    });
}

export interface ScaffoldOptions {
  /** The repository to scaffold into. */
  root: string;
  name: string;
  /** The manifest as it stands: the names taken and the ports in use. */
  deployables: readonly Deployable[];
  /**
   * Then run root's generators: gen/ (npm run generate), the first migration (npm run
   * db:generate) and the deploy files. A dry scaffold writes the files and the manifest entry alone.
   */
  generate: boolean;
  log?: (line: string) => void;
}

/**
 * Scaffolds a working service into `root`: its v1 contract, its folder in the house shape, its
 * manifest entry (before the gateway's, on the lowest free port pair), and, unless dry, gen/,
 * its migration and deploy files. Everything is checked before anything is written: a bad name
 * throws InvalidServiceNameError and writes nothing. If a generator fails, what this wrote is
 * removed again and services/mesh.ts restored. Returns the files written, relative to `root`.
 */
export function scaffoldService(options: ScaffoldOptions): string[] {
  const { root, name, log = () => {} } = options;
  validateServiceName(name, root, options.deployables);
  const entry = newServiceEntry(name, freePortPair(options.deployables));
  const manifestPath = join(root, MANIFEST);
  const manifestBefore = readFileSync(manifestPath, "utf8");
  const manifestAfter = insertEntry(manifestBefore, entry);
  const files = renderTemplates(name);
  // validateServiceName saw none of these: they are the new service's alone, to remove on failure.
  const ownFolders = [join("services", name), join("proto", "shop", name), join("gen", "shop", name)];

  const undo = () => {
    for (const folder of ownFolders) rmSync(join(root, folder), { recursive: true, force: true });
    writeFileSync(manifestPath, manifestBefore);
  };
  try {
    for (const { path, text } of files) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    writeFileSync(manifestPath, manifestAfter);
    log(`${name}: ${files.length} files, and its entry in ${MANIFEST} on ports ${entry.port.default} and ${entry.opsPort.default}`);
    if (options.generate) {
      run(root, log, "gen/ from the new contract", "npm", ["run", "generate"]);
      run(root, log, "its first migration", "npm", ["run", "db:generate", "--", name, "init"]);
    }
  } catch (err) {
    undo();
    throw err;
  }
  const written = [...files.map((f) => f.path), MANIFEST];
  if (options.generate) generateDeploy(root, log);
  return written;
}

function run(root: string, log: (line: string) => void, title: string, command: string, args: string[]): void {
  log(`${title}: ${command} ${args.join(" ")}`);
  execFileSync(command, args, { cwd: root, stdio: "inherit" });
}

/**
 * The last step: compose.yaml, deploy/k8s and the NATS configs rendered from the manifest by
 * deploy/generate-deploy.ts. Not undone on failure: the service itself is complete and works,
 * and the generator can simply be run again.
 */
function generateDeploy(root: string, log: (line: string) => void): void {
  run(root, log, "the deploy files from the manifest", "npx", ["tsx", join("deploy", "generate-deploy.ts")]);
}
