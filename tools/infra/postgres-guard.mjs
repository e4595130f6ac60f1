// Runs the postmaster for startLocalPostgres (local-postgres.ts) so that it dies with the
// process that started it, however that process ends: a normal exit, an uncaught error,
// SIGTERM, even SIGKILL. Postgres itself never notices its parent going away, and Node
// runs no `exit` hook when a signal kills it. This guard's stdin is a pipe from that
// parent, and the kernel closes it whenever the parent dies; end of stdin means "stop".
//
// Plain JavaScript, run by `node` without a loader, so it adds tens of milliseconds to a
// start, not the second a TypeScript loader would (test suites start many clusters).
//
// Usage: node postgres-guard.mjs '<json {command, args, cwd?, uid?, gid?}>'
// The postmaster's stderr is this process's stderr (its reader watches it for readiness).
// Stop signals (SIGINT fast, SIGTERM smart, SIGQUIT immediate) are passed to the
// postmaster; the guard exits when the postmaster has, with its exit code.
import { spawn } from "node:child_process";

const { command, args, cwd, uid, gid } = JSON.parse(process.argv[2] ?? "{}");
const server = spawn(command, args, { cwd, uid, gid, stdio: ["ignore", "ignore", "inherit"] });

server.once("error", (err) => {
  process.stderr.write(`could not start ${command}: ${err.message}\n`);
  process.exit(1);
});
server.once("exit", (code) => process.exit(code ?? 1));

for (const signal of ["SIGINT", "SIGTERM", "SIGQUIT"]) process.on(signal, () => server.kill(signal));
// A hang-up (the terminal closed) is no reason to stop: the parent decides, and if it dies
// of it too, its end of stdin closes.
process.on("SIGHUP", () => {});

let parentGone = false;
const stopWithParent = () => {
  if (parentGone) return;
  parentGone = true;
  server.kill("SIGINT"); // fast shutdown: cut sessions, checkpoint, exit
  setTimeout(() => server.kill("SIGQUIT"), 30_000);
};
process.stdin.on("end", stopWithParent);
process.stdin.on("close", stopWithParent);
process.stdin.on("error", stopWithParent);
process.stdin.resume();
