/**
 * Writes the secrets deploy/ runs with and never commits (deploy/.gitignore), one set per
 * deployable of the manifest: its NATS password (none for a legacy one), its Postgres password if
 * it has a schema, and for compose its mesh certificate; besides them the Postgres admin password,
 * the operator's NATS password, and the gateway's local signing secrets (demo tokens' and
 * operators'). A legacy deployable's own cluster has an admin password, its app role's and its
 * capturer's change data capture role's.
 *   npx tsx deploy/generate-secrets.ts
 * Passwords are made once and kept in deploy/.secrets/values, so running it again changes none;
 * compose's certificates are issued anew at every run (running services pick them up).
 */
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { meshDeployables, type Deployable } from "#mesh";
import { OPERATOR } from "#platform/trust/mesh-identity.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";
import { localSecret } from "#tools/infra/local-secrets.js";
import { natsPasswordVariable } from "#tools/infra/nats-accounts.js";
import { loadOrCreateCertificateAuthority } from "#tools/infra/pki.js";
import { isLegacy, legacyCluster } from "./legacy-deployables.js";

/** Compose has nothing that renews certificates: a month, then run the generator again. */
const COMPOSE_CERTIFICATE_LIFETIME_MS = 30 * 86_400_000;

/** The variable postgres-init.sql reads a service role's password from, e.g. ORDER_DB_PASSWORD. */
export const databasePasswordVariable = (name: string) => `${name.toUpperCase()}_DB_PASSWORD`;

/** Where each file goes, under a deploy/ directory: the k8s overlay may load only files below it. */
export const secretDirectories = (deployDir: string) => ({
  values: join(deployDir, ".secrets/values"),
  compose: join(deployDir, ".secrets/compose"),
  k8s: join(deployDir, "k8s/overlays/local/secrets"),
});

function writePrivate(dir: string, file: string, contents: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const path = join(dir, file);
  writeFileSync(path, contents, { mode: 0o600 });
  chmodSync(path, 0o600); // an existing file keeps its mode through writeFileSync
}

const envFile = (variables: Record<string, string>) =>
  Object.entries(variables)
    .map(([name, value]) => `${name}=${value}\n`)
    .join("");

/**
 * nats-server parses a variable's value as config: quoted, a password that starts with a digit
 * or "-" still reads as itself. Single quotes keep compose from taking the double ones off.
 */
const natsPasswordValue = (password: string) => `'"${password}"'`;

/** Writes every secret file for the deploy/ directory `deployDir`; returns what it wrote, for the caller to report. */
export async function generateSecrets(deployDir: string, deployables: readonly Deployable[] = meshDeployables): Promise<string[]> {
  const dirs = secretDirectories(deployDir);
  const secret = (name: string) => localSecret(dirs.values, name);
  const adminPassword = secret("postgres-admin");
  // Mesh identities: every deployable and the operator. NATS users: those but the legacy
  // deployables, and the console's backend (the gateway's operator listener, which compose does
  // not run: it gets no certificate there).
  const principals = [...deployables.map((d) => d.name), OPERATOR];
  const natsUsers = [...deployables.filter((d) => !isLegacy(d)).map((d) => d.name), OPERATOR, CONSOLE];
  const withSchema = deployables.filter((d) => d.schema !== undefined);
  const clusters = deployables.filter(isLegacy).map(legacyCluster);
  const legacyUrl = (role: string, secretName: string, c: (typeof clusters)[number]) => `postgres://${role}:${secret(secretName)}@${c.host}:5432/${c.database}`;
  const written: string[] = [];
  const write = (dir: string, file: string, contents: string) => {
    writePrivate(dir, file, contents);
    written.push(join(dir, file));
  };

  // The k8s local overlay's secretGenerator: one Secret per service and purpose.
  write(dirs.k8s, "postgres-admin.env", envFile({ password: adminPassword }));
  for (const { name } of withSchema) write(dirs.k8s, `${name}-db.env`, envFile({ password: secret(`${name}-db`) }));
  for (const name of natsUsers) write(dirs.k8s, `${name}-nats.env`, envFile({ password: secret(`${name}-nats`) }));
  for (const c of clusters) for (const name of [c.adminSecret, c.appSecret, c.captureSecret]) write(dirs.k8s, `${name}.env`, envFile({ password: secret(name) }));
  write(dirs.k8s, "gateway-local-auth.env", envFile({ secret: secret("gateway-local-auth") }));
  write(dirs.k8s, "gateway-operator-auth.env", envFile({ secret: secret("gateway-operator-auth") }));

  // Compose: an env file per container, each holding only what that container uses.
  write(dirs.compose, "postgres.env", envFile({ POSTGRES_PASSWORD: adminPassword }));
  write(dirs.compose, "postgres-roles.env", envFile({ PGPASSWORD: adminPassword, ...Object.fromEntries(withSchema.map(({ name }) => [databasePasswordVariable(name), secret(`${name}-db`)])) }));
  write(dirs.compose, "nats.env", envFile(Object.fromEntries(natsUsers.map((name) => [natsPasswordVariable(name), natsPasswordValue(secret(`${name}-nats`))]))));
  for (const c of clusters) {
    write(dirs.compose, `${c.host}.env`, envFile({ POSTGRES_PASSWORD: secret(c.adminSecret) }));
    write(
      dirs.compose,
      `${c.host}-roles.env`,
      envFile({ PGPASSWORD: secret(c.adminSecret), [databasePasswordVariable(c.owner)]: secret(c.appSecret), [databasePasswordVariable(c.captureRole)]: secret(c.captureSecret) }),
    );
  }
  for (const d of deployables) {
    const { name, schema } = d;
    const legacy = clusters.find((c) => c.owner === name);
    write(
      dirs.compose,
      `${name}.env`,
      envFile(
        legacy
          ? { DATABASE_URL: legacyUrl(legacy.owner, legacy.appSecret, legacy) }
          : {
              NATS_URL: `nats://${name}:${secret(`${name}-nats`)}@nats:4222`,
              ...(schema === undefined ? {} : { DATABASE_URL: `postgres://${name}:${secret(`${name}-db`)}@postgres:5432/${name}` }),
              ...Object.fromEntries(clusters.filter((c) => c.capturedBy === name).map((c) => [c.captureUrlVariable, legacyUrl(c.captureRole, c.captureSecret, c)])),
              ...(name === "gateway" ? { AUTH_LOCAL_SECRET: secret("gateway-local-auth") } : {}),
            },
      ),
    );
  }

  // Compose's mesh CA, whose key no container mounts, and a directory per identity laid out as
  // cert-manager's Secrets are (tls.crt, tls.key, ca.crt), each mounted by its service alone.
  const ca = await loadOrCreateCertificateAuthority(join(dirs.compose, "ca"));
  for (const identity of principals) {
    const credentials = await ca.issue(identity, { lifetimeMs: COMPOSE_CERTIFICATE_LIFETIME_MS, clientOnly: identity === OPERATOR });
    const dir = join(dirs.compose, "pki", identity);
    write(dir, "tls.key", credentials.keyPem);
    write(dir, "tls.crt", credentials.certPem);
    write(dir, "ca.crt", ca.certPem);
  }
  return written;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const written = await generateSecrets(import.meta.dirname);
  console.log(`wrote ${written.length} files under ${import.meta.dirname} (deploy/.secrets and deploy/k8s/overlays/local/secrets; both git-ignored)`);
  console.log(`compose's certificates expire in ${COMPOSE_CERTIFICATE_LIFETIME_MS / 86_400_000} days: run this again before then`);
}
