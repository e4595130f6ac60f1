/**
 * `npm run service -- <name>`: one service in the foreground, configured as `npm start`
 * would configure it: the same Postgres and NATS, its own role, user and certificate (from
 * .data/, so it joins a running `npm start` mesh), and the peers' addresses. It runs the
 * sources under tsx; with NODE_ENV=production, the compiled runtime, as the image does,
 * built first if dist/ is missing or older than the sources.
 */
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { repoRoot, resolveLegacyPostgres, resolveNats, resolvePki, resolvePostgres, secretsDir } from "./local-infra.js";
import { childEnv, meshServicesOrExit } from "./topology.js";
import { persistentMeshSecrets, withMeshCredentials } from "./mesh-launch.js";
import { ensureBuilt, launchArgs, meshRuntime } from "./runtime.js";

const name = process.argv[2];
const all = meshServicesOrExit(process.env);
if (!all.some((s) => s.name === name)) {
  console.error(`usage: npm run service -- <${all.map((s) => s.name).join("|")}>`);
  process.exit(2);
}
const log = (line: string) => console.error(`meshwork: ${line}`);
const runtime = meshRuntime(process.env);
try {
  await ensureBuilt(runtime, log);
} catch (err) {
  log(`build failed: ${(err as Error).message}`);
  process.exit(1);
}
const secrets = persistentMeshSecrets(secretsDir);
const postgres = await resolvePostgres(process.env, log);
const legacyPostgres = await resolveLegacyPostgres(process.env, log);
const nats = await resolveNats(process.env, log, secrets);
const pki = await resolvePki(process.env, log);
const services = await withMeshCredentials(all, { adminDatabaseUrl: postgres.url, legacyAdminDatabaseUrl: legacyPostgres.url, natsUrlFor: nats.urlFor, pki, secrets });
const service = services.find((s) => s.name === name)!;
// In a process group of its own, so the terminal's Ctrl-C reaches it once, from us: a second
// signal would cut its graceful drain short.
const child = spawn(process.execPath, launchArgs(service, runtime), {
  cwd: repoRoot,
  env: { ...childEnv(process.env, services), ...service.env },
  stdio: ["ignore", "inherit", "inherit"],
  detached: true,
});
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
async function stopDependencies() {
  pki?.stop();
  await nats.stop().catch((err: Error) => log(`stopping nats-server: ${err.message}`));
  await legacyPostgres.stop().catch((err: Error) => log(`stopping the old shop's Postgres: ${err.message}`));
  await postgres.stop().catch((err: Error) => log(`stopping Postgres: ${err.message}`));
}
child.once("error", async (err) => {
  log(`could not start ${name}: ${err.message}`);
  await stopDependencies();
  process.exit(1);
});
child.once("exit", async (code, signal) => {
  await stopDependencies();
  // As a shell reports it: a death by signal is 128 plus the signal's number.
  process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0));
});
