/**
 * `npm start`: the whole mesh on one machine, secure by default. Resolves Postgres and
 * NATS, issues the mesh's certificates, gives every service its own Postgres role, NATS user
 * and certificate, starts them under supervision, waits for SERVING, writes .data/mesh.json
 * for the tools, prints where everything is, and on Ctrl-C stops the services, then the
 * dependencies it started.
 */
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dataDir, resolveLegacyPostgres, resolveNats, resolvePki, resolvePostgres, secretsDir, type Dependency } from "./local-infra.js";
import { childEnv, meshServicesOrExit, type MeshService } from "./topology.js";
import { OPERATOR } from "#platform/trust/mesh-identity.js";
import { persistentMeshSecrets, withMeshCredentials } from "./mesh-launch.js";
import type { MeshPki } from "./mesh-pki.js";
import { defaultMeshStateFile, writeMeshState } from "./mesh-state.js";
import { ensureBuilt, meshRuntime } from "./runtime.js";
import { createSupervisor } from "./supervisor.js";
import { mintLocalOperatorToken } from "#gateway/src/operator/operator-auth.js";
import { integer, optionalString } from "#platform";

/** The operator link's life: a working day (or the gateway's shorter OPERATOR_MAX_TOKEN_LIFETIME_SECONDS), then `npm start` again writes a fresh one. */
const OPERATOR_TOKEN_SECONDS = 12 * 60 * 60;
/** Where the operator link goes, 0600: a terminal's scrollback may be shared, a CI log kept. */
const operatorLinkFile = join(dataDir, "operator-console.url");

const log = (line: string) => console.log(line);
const env = process.env;
const secrets = persistentMeshSecrets(secretsDir);
const dependencies: Dependency[] = [];
let pki: MeshPki | undefined;

async function stopDependencies() {
  pki?.stop();
  for (const dependency of dependencies.reverse()) await dependency.stop();
}

/** A settled start's value, or its failure thrown. */
function valueOf<T>(result: PromiseSettledResult<T>): T {
  if (result.status === "rejected") throw result.reason;
  return result.value;
}

let services: MeshService[];
let natsUrl: string;
try {
  // Under NODE_ENV=production the services run compiled: build them first if dist/ is stale.
  await ensureBuilt(meshRuntime(env), log);
  // Independent of each other, so started together: start-up time is a budget (10 s).
  const [postgres, legacyPostgres, nats, issued] = await Promise.allSettled([
    resolvePostgres(env, log),
    resolveLegacyPostgres(env, log),
    resolveNats(env, log, secrets),
    resolvePki(env, log),
  ]);
  // Whatever did start is stopped on the way out, even if something else failed; the
  // Postgres clusters last (dependencies stop in reverse).
  for (const started of [postgres, legacyPostgres, nats]) if (started.status === "fulfilled") dependencies.push(started.value);
  if (issued.status === "fulfilled") pki = issued.value;
  const adminDatabaseUrl = valueOf(postgres).url;
  const legacyAdminDatabaseUrl = valueOf(legacyPostgres).url;
  const { url, urlFor } = valueOf(nats);
  valueOf(issued);
  natsUrl = url;
  services = await withMeshCredentials(meshServicesOrExit(env), { adminDatabaseUrl, legacyAdminDatabaseUrl, natsUrlFor: urlFor, pki, secrets, devTraces: true });
} catch (err) {
  console.error(`meshwork: ${(err as Error).message}`);
  await stopDependencies();
  process.exit(1);
}
const supervisor = createSupervisor(services, { env: childEnv(env, services), log });

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
try {
  supervisor.start();
  await supervisor.waitUntilServing(120_000);
} catch (err) {
  log(`meshwork: ${(err as Error).message}`);
  await shutdown("start-up failure", 1);
}

const scheme = (s: MeshService) => (s.name === "gateway" || !pki ? "http" : "https");
const address = (s: MeshService) => `${scheme(s)}://127.0.0.1:${s.port}`;
if (pki) {
  writeMeshState(defaultMeshStateFile(dataDir), {
    services: Object.fromEntries(services.map((s) => [s.name, { url: address(s), opsUrl: `http://127.0.0.1:${s.opsPort}` }])),
    natsUrl,
    operator: pki.operator,
    operatorNatsPasswordFile: join(secretsDir, `${OPERATOR}.nats`),
  });
}
const rows = [
  ["service", "address", "health"],
  ...(await Promise.all(services.map(async (s) => [s.name, address(s), await supervisor.status(s)]))),
  ...dependencies.map((d) => [d.name, d.url.replace(/:[^:@/]+@/, ":***@"), d.source]),
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
log(`\nMeshwork is up in ${((Date.now() - started) / 1000).toFixed(1)} s. Each service port speaks gRPC, gRPC-Web and Connect (the old shop's, JSON over HTTP/1.1)${pki ? ", and requires a mesh client certificate" : ""}.\n`);
for (const row of rows) log(`  ${row.map((cell, i) => cell.padEnd(widths[i]!)).join("   ")}`);
const gateway = services.find((s) => s.name === "gateway")!;
log(`\nConsole: http://127.0.0.1:${gateway.port}/`);
if (gateway.operatorPort !== undefined && (env["AUTH_MODE"] ?? "local") === "local") {
  // Minted as the gateway will check it, which reads the same variables with the same
  // defaults (gateway/src/config.ts): a role claim or lifetime set for it applies here too.
  const roles = { claim: optionalString(env, "OPERATOR_ROLES_CLAIM", "roles"), role: optionalString(env, "OPERATOR_ROLE", "operator") };
  const lifetimeSeconds = Math.min(OPERATOR_TOKEN_SECONDS, integer(env, "OPERATOR_MAX_TOKEN_LIFETIME_SECONDS", OPERATOR_TOKEN_SECONDS, { min: 60, max: 7 * 24 * 60 * 60 }));
  const token = await mintLocalOperatorToken(secrets.operatorAuthSecret(), "local-operator", lifetimeSeconds, roles);
  // In the fragment, which the browser never sends: the page keeps it in its tab alone.
  const link = `http://127.0.0.1:${gateway.operatorPort}/#operator-token=${token}`;
  writeFileSync(operatorLinkFile, `${link}\n`, { mode: 0o600 });
  // The mode applies only to a new file: a link file of an earlier start keeps its own.
  chmodSync(operatorLinkFile, 0o600);
  const life = `${(lifetimeSeconds / 3600).toFixed(lifetimeSeconds % 3600 === 0 ? 0 : 1)} h`;
  // Only to a terminal: stdout redirected to a file or a CI log would keep the token.
  if (process.stdout.isTTY) log(`Operator console (loopback only; this link signs you in as local-operator for ${life}): ${link}`);
  else log(`Operator console (loopback only): the link that signs you in as local-operator for ${life} is in ${operatorLinkFile} (0600).`);
}
if (pki) log(`Operator certificate: .data/pki/operator.crt and .data/pki/operator.key, CA .data/pki/ca.crt (see the README for grpcurl, curl and Python).`);
log(`Try: curl -s -H 'content-type: application/json' -d '{}' http://127.0.0.1:${gateway.port}/shop.gateway.v1.StorefrontService/ListProducts\nCtrl-C stops everything.\n`);
