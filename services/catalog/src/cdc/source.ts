import pg from "pg";
import { fromLegacyRow, type CatalogProduct } from "../domain/product.js";
import { parseLsn } from "../domain/lsn.js";

/** The one table the catalog captures; the old shop owns it. */
export const SOURCE_TABLE = { schema: "oldshop", name: "products" } as const;

/** Rows per read of the snapshot: one batch is held in memory at a time. */
const SNAPSHOT_BATCH = 500;
/** A connection attempt to the old shop's database that hangs is a failed one (the reader backs off and retries). */
const CONNECT_TIMEOUT_MS = 10_000;

export interface SourceOptions {
  /** The change capture role's URL on the old shop's database (LOGIN REPLICATION, SELECT on the table). */
  url: string;
  slot: string;
}

const clientConfig = (url: string, replication: boolean): pg.ClientConfig => ({
  connectionString: url,
  application_name: "catalog-cdc",
  connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  ...(replication ? { replication: "database" } : {}),
});

/** How the streaming connection is configured; the LogicalReplicationService opens it. */
export const replicationClientConfig = (url: string) => clientConfig(url, true);

export const DEFAULT_SLOT = "catalog_from_oldshop";
export const DEFAULT_PUBLICATION = "oldshop_catalog";

/** Slot names are identifiers the replication protocol takes unquoted-safe; config checks the same rule. */
export const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

/**
 * Creates the permanent slot and copies the table from the snapshot it exports: the copy holds
 * every transaction committed before the slot's consistent point, the slot every one after.
 * A slot left by a backfill that never committed its position is dropped first. `write` gets
 * the consistent point and the rows, and must commit both before it returns: the exported
 * snapshot lives only as long as the replication connection that made it.
 */
export async function backfillFromNewSlot<T>({ url, slot }: SourceOptions, write: (consistentPoint: bigint, rows: AsyncIterable<readonly CatalogProduct[]>) => Promise<T>): Promise<T> {
  if (!SLOT_NAME.test(slot)) throw new Error(`slot name ${JSON.stringify(slot)} is not [a-z0-9_]{1,63}`);
  const replication = new pg.Client(clientConfig(url, true));
  const reader = new pg.Client(clientConfig(url, false));
  // A connection that drops mid-copy fails the copy through its query; the event must not crash the process.
  replication.on("error", () => {});
  reader.on("error", () => {});
  try {
    await replication.connect();
    await reader.connect();
    // Slot names are the whole cluster's: one of another database is never the catalog's to drop.
    const existing = await reader.query<{ database: string; ours: boolean }>("select database, database = current_database() as ours from pg_replication_slots where slot_name = $1", [slot]);
    const found = existing.rows[0];
    if (found && !found.ours) throw new Error(`replication slot ${slot} belongs to database ${found.database}, not this one: give the catalog a slot name of its own (CDC_SLOT)`);
    if (found) await replication.query(`DROP_REPLICATION_SLOT ${slot}`);
    const created = await replication.query<{ consistent_point: string; snapshot_name: string }>(`CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput (SNAPSHOT 'export')`);
    const { consistent_point, snapshot_name } = created.rows[0]!;
    await reader.query("begin isolation level repeatable read read only");
    await reader.query(`set transaction snapshot '${snapshot_name.replace(/'/g, "''")}'`);
    return await write(parseLsn(consistent_point), snapshotRows(reader));
  } finally {
    await Promise.allSettled([reader.end(), replication.end()]);
  }
}

/** The table in SKU order, in batches, within the reader's snapshot transaction. */
async function* snapshotRows(reader: pg.Client): AsyncIterable<readonly CatalogProduct[]> {
  let after: string | undefined;
  for (;;) {
    // price as text: numeric read exactly, never through a float.
    const { rows } = await reader.query(
      `select sku, title, blurb, price::text as price, currency from ${SOURCE_TABLE.schema}.${SOURCE_TABLE.name} where $1::text is null or sku > $1 order by sku limit ${SNAPSHOT_BATCH}`,
      [after ?? null],
    );
    if (rows.length === 0) return;
    yield rows.map((row) => {
      const product = fromLegacyRow(row);
      return { ...product, description: product.description ?? "" };
    });
    after = rows[rows.length - 1]!["sku"] as string;
  }
}

/** The slot's row in pg_replication_slots, as JSON: invalidation_reason exists from PG17, conflicting from PG16. */
export interface SlotRow {
  database: string | null;
  wal_status?: string | null;
  invalidation_reason?: string | null;
  conflicting?: boolean | null;
}

/**
 * Why the slot can no longer give the catalog its changes, or undefined while it can: gone, on
 * another database (a new slot took its name), or invalidated by the source (its WAL removed
 * past max_slot_wal_keep_size, or rows it needed vacuumed away). Such changes are lost for good.
 */
export function slotLoss(slot: string, row: SlotRow | undefined, database: string): string | undefined {
  if (!row) return `slot ${slot} no longer exists on the source`;
  if (row.database !== database) return `slot ${slot} now belongs to database ${row.database ?? "(none)"}, not ${database}`;
  if (row.invalidation_reason) return `slot ${slot} was invalidated by the source (invalidation_reason ${row.invalidation_reason}, wal_status ${row.wal_status ?? "unknown"})`;
  if (row.wal_status === "lost") return `slot ${slot} was invalidated by the source (wal_status lost)`;
  if (row.conflicting) return `slot ${slot} was invalidated by the source (conflicting with recovery)`;
  return undefined;
}

/** Asks the source whether the slot is lost (see slotLoss); rejects when the source cannot be asked. */
export async function inspectSlotLoss({ url, slot }: SourceOptions): Promise<string | undefined> {
  const client = new pg.Client(clientConfig(url, false));
  client.on("error", () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ row: SlotRow | null; here: string }>(
      "select current_database() as here, (select to_jsonb(s) from pg_replication_slots s where slot_name = $1) as row",
      [slot],
    );
    const { row, here } = rows[0]!;
    return slotLoss(slot, row ?? undefined, here);
  } finally {
    await client.end().catch(() => {});
  }
}
