import { provisionServiceRoles, serviceDatabaseUrl } from "../infra/database-roles.js";
import { captureRole, provisionLegacyDatabase } from "../infra/legacy-database.js";
import { meshDeployables, withSchema, type Deployable } from "#mesh";

/**
 * Gives every deployable with a schema its own Postgres role, named after the service and
 * owning only that schema, through the admin URL; returns each one's own URL. The admin URL
 * goes no further than this.
 */
export async function provisionMeshDatabases(adminUrl: string, password: (name: string) => string): Promise<(name: string) => string | undefined> {
  const roles = withSchema.map((d) => ({ role: d.name, schema: d.schema, password: password(d.name) }));
  await provisionServiceRoles(adminUrl, roles);
  const urls = new Map<string, string>(roles.map((r) => [r.role, serviceDatabaseUrl(adminUrl, r.role, r.password)]));
  return (name) => urls.get(name);
}

/** The legacy deployables of the manifest (the old shop), each on a cluster of its own. */
export const legacyDeployables = (meshDeployables as readonly Deployable[]).flatMap((d) => (d.legacy ? [{ ...d, legacy: d.legacy }] : []));

/** The variable a legacy app's capturer reads its capture role's URL from, e.g. OLDSHOP_CDC_URL. */
export const captureUrlVariable = (legacyName: string) => `${legacyName.toUpperCase()}_CDC_URL`;
/** The variable that names a legacy app's cluster as an ADMIN URL, e.g. OLDSHOP_DATABASE_URL: the launchers' alone. */
export const legacyAdminUrlVariable = (legacyName: string) => `${legacyName.toUpperCase()}_DATABASE_URL`;

export interface LegacyDatabases {
  /** The legacy app's own role's URL. */
  databaseUrl(name: string): string | undefined;
  /** The capture's variables for a deployable that captures a legacy app's changes (the catalog: OLDSHOP_CDC_URL). */
  captureEnv(name: string): Record<string, string>;
}

/**
 * Provisions each legacy app's database on its own cluster (`adminUrl`, the legacy
 * cluster's admin URL, which goes no further): the app's role, its capturer's replication
 * role and the publication (tools/infra/legacy-database.ts).
 */
export async function provisionLegacyDatabases(adminUrl: string, password: (role: string) => string): Promise<LegacyDatabases> {
  const app = new Map<string, string>();
  const capture = new Map<string, Record<string, string>>();
  for (const d of legacyDeployables) {
    const urls = await provisionLegacyDatabase(adminUrl, d, { app: password(d.name), capture: password(captureRole(d)) });
    app.set(d.name, urls.appUrl);
    capture.set(d.legacy.capturedBy, { ...capture.get(d.legacy.capturedBy), [captureUrlVariable(d.name)]: urls.captureUrl });
  }
  return { databaseUrl: (name) => app.get(name), captureEnv: (name) => capture.get(name) ?? {} };
}
