import { provisionServiceRoles, serviceDatabaseUrl } from "../infra/database-roles.js";
import { withSchema } from "#mesh";

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
