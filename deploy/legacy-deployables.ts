/**
 * What deploy/ runs for a `legacy` deployable of the manifest (the strangler fig's old
 * application, services/mesh.ts): no NATS user and no gRPC, and a Postgres cluster of its own
 * with logical decoding on, so the replication rights its capturer's change data capture needs
 * grant nothing over the mesh's data. Every name below follows from the manifest entry; the
 * roles and the publication are named as `npm start` names them (tools/infra/legacy-database.ts).
 */
import { meshDeployables, type Deployable } from "#mesh";
import { capturePublication, captureRole, legacyClusterSettings } from "#tools/infra/legacy-database.js";
import { CONSOLE, OPERATOR } from "#platform/trust/mesh-identity.js";

export type LegacyDeployable = Deployable & { legacy: NonNullable<Deployable["legacy"]> };

export const isLegacy = (d: Deployable): d is LegacyDeployable => d.legacy !== undefined;

/** The deployables that speak the mesh's protocols: gRPC, NATS, the mesh's Postgres. */
export const meshNative: readonly Deployable[] = (meshDeployables as readonly Deployable[]).filter((d) => !isLegacy(d));

/** A legacy deployable's own cluster, and the two roles on it. */
export interface LegacyCluster {
  /** The legacy deployable, e.g. oldshop. */
  owner: string;
  /** Its StatefulSet, Service and host name, e.g. oldshop-postgres. */
  host: string;
  /** The database the app and the capture share, named after the app. */
  database: string;
  schema: string;
  /** The deployable that captures its changes, e.g. catalog. */
  capturedBy: string;
  /** The capturer's role there, LOGIN REPLICATION, e.g. catalog_cdc. */
  captureRole: string;
  /** The publication the capture streams, e.g. oldshop_catalog. */
  publication: string;
  /** The capturer's variable for its URL, e.g. OLDSHOP_CDC_URL. */
  captureUrlVariable: string;
  /** The Secrets: the cluster's admin password, the app role's (as for a mesh service), the capture role's (the capturer's own). */
  adminSecret: string;
  appSecret: string;
  captureSecret: string;
}

export function legacyCluster(d: LegacyDeployable): LegacyCluster {
  const { name, legacy } = d;
  const host = `${name}-postgres`;
  return {
    owner: name,
    host,
    database: name,
    schema: legacy.schema,
    capturedBy: legacy.capturedBy,
    captureRole: captureRole(d),
    publication: capturePublication(d),
    captureUrlVariable: `${name.toUpperCase()}_CDC_URL`,
    adminSecret: `${host}-admin`,
    appSecret: `${name}-db`,
    captureSecret: `${legacy.capturedBy}-cdc`,
  };
}

/** Every legacy deployable's cluster, in the manifest's order. */
export const legacyClusters: readonly LegacyCluster[] = (meshDeployables as readonly Deployable[]).filter(isLegacy).map(legacyCluster);

/** The clusters `name` captures changes from (the catalog: the old shop's). */
export const capturedFrom = (name: string) => legacyClusters.filter((c) => c.capturedBy === name);

/** The deployables whose manifest entry calls `name`: the legacy app's callers, which no contract names. */
export const callersOf = (name: string) => (meshDeployables as readonly Deployable[]).filter((d) => d.calls.includes(name)).map((d) => d.name).sort();

/**
 * The identities a legacy app admits as writers: the operator; the console (the gateway's
 * operator listener, writing there while the capability's writes stay legacy); and its
 * capturer, whose sync back writes there once they have moved to the new side.
 */
export const writersOf = (d: LegacyDeployable) => [OPERATOR, CONSOLE, d.legacy.capturedBy];

/**
 * A legacy cluster's server settings: `npm start`'s (logical decoding for the capturer's slot),
 * and a bound on the WAL a slot may hold while its reader is away. Past it the slot is lost and
 * the capture must start over from a new snapshot, rather than the volume filling up.
 */
export const deployedLegacySettings: Readonly<Record<string, string>> = { ...legacyClusterSettings, max_slot_wal_keep_size: "4GB" };
