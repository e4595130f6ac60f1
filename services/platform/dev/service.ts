/**
 * `npm run service -- <name>`: one service in the foreground, configured as `npm start`
 * would configure it (the same Postgres, NATS and peer addresses).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { repoRoot, resolveNats, resolvePostgres } from "./local-infra.js";
import { childEnv, meshServicesOrExit } from "./mesh.js";

const name = process.argv[2];
const services = meshServicesOrExit(process.env);
const service = services.find((s) => s.name === name);
if (!service) {
  console.error(`usage: npm run service -- <${services.map((s) => s.name).join("|")}>`);
  process.exit(2);
}
const log = (line: string) => console.error(`meshwork: ${line}`);
const postgres = await resolvePostgres(process.env, log);
const nats = await resolveNats(process.env, log);
const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, service.main)], {
  cwd: repoRoot,
  env: childEnv(process.env, services, { databaseUrl: postgres.url, natsUrl: nats.url }),
  stdio: "inherit",
});
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
child.once("exit", async (code) => {
  await nats.stop();
  await postgres.stop();
  process.exit(code ?? 1);
});
