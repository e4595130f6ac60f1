/**
 * `npm start`: the whole mesh on one machine. Resolves Postgres and NATS, starts every
 * service under supervision, waits for SERVING, prints where everything is, and on Ctrl-C
 * stops the services, then the dependencies it started.
 */
import { resolveNats, resolvePostgres, type Dependency } from "./local-infra.js";
import { childEnv, meshServicesOrExit } from "./mesh.js";
import { createSupervisor } from "./supervisor.js";

const log = (line: string) => console.log(line);
const env = process.env;
const services = meshServicesOrExit(env);
const dependencies: Dependency[] = [];

async function stopDependencies() {
  for (const dependency of dependencies.reverse()) await dependency.stop();
}

try {
  dependencies.push(await resolvePostgres(env, log));
  dependencies.push(await resolveNats(env, log));
} catch (err) {
  console.error(`meshwork: ${(err as Error).message}`);
  await stopDependencies();
  process.exit(1);
}
const [postgres, nats] = dependencies as [Dependency, Dependency];
const supervisor = createSupervisor(services, { env: childEnv(env, services, { databaseUrl: postgres.url, natsUrl: nats.url }), log });

let stopping = false;
async function shutdown(signal: string, exitCode = 0) {
  if (stopping) return;
  stopping = true;
  log(`meshwork: ${signal}; stopping services`);
  await supervisor.stop(15_000);
  await stopDependencies();
  log("meshwork: stopped");
  process.exit(exitCode);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));

const started = Date.now();
supervisor.start();
try {
  await supervisor.waitUntilServing(120_000);
} catch (err) {
  log(`meshwork: ${(err as Error).message}`);
  await shutdown("start-up failure", 1);
}

const rows = [
  ["service", "address", "health"],
  ...(await Promise.all(services.map(async (s) => [s.name, `http://127.0.0.1:${s.port}`, await supervisor.status(s)]))),
  ...dependencies.map((d) => [d.name, d.url.replace(/:[^:@/]+@/, ":***@"), d.source]),
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
log(`\nMeshwork is up in ${((Date.now() - started) / 1000).toFixed(1)} s. Each service port speaks gRPC, gRPC-Web and Connect.\n`);
for (const row of rows) log(`  ${row.map((cell, i) => cell.padEnd(widths[i]!)).join("   ")}`);
const gateway = services.find((s) => s.name === "gateway")!;
log(`\nConsole: http://127.0.0.1:${gateway.port}/`);
log(`Try: curl -s -H 'content-type: application/json' -d '{}' http://127.0.0.1:${gateway.port}/shop.gateway.v1.StorefrontService/ListProducts\nCtrl-C stops everything.\n`);
