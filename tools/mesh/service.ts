/**
 * `npm run service -- <name>`: one service in the foreground, configured as `npm start`
 * would configure it: the same Postgres and NATS, its own role, user and certificate (from
 * .data/, so it joins a running `npm start` mesh), and the peers' addresses. It runs the
 * sources under tsx; with NODE_ENV=production, the compiled runtime, as the image does,
 * built first if dist/ is missing or older than the sources.
 */
import { spawn } from "node:child_process";
import { repoRoot, resolveNats, resolvePki, resolvePostgres, secretsDir } from "./local-infra.js";
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
const nats = await resolveNats(process.env, log, secrets);
const pki = await resolvePki(process.env, log);
const services = await withMeshCredentials(all, { adminDatabaseUrl: postgres.url, natsUrlFor: nats.urlFor, pki, secrets });
const service = services.find((s) => s.name === name)!;
const child = spawn(process.execPath, launchArgs(service, runtime), {
  cwd: repoRoot,
  env: { ...childEnv(process.env, services), ...service.env },
  stdio: "inherit",
});
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
child.once("exit", async (code) => {
  pki?.stop();
  await nats.stop();
  await postgres.stop();
  process.exit(code ?? 1);
});
