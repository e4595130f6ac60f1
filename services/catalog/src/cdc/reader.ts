import { setTimeout as sleep } from "node:timers/promises";
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from "pg-logical-replication";
import type { Logger } from "#platform";
import type { CatalogStore, ProductChange } from "../app/catalog-store.js";
import { UnmappableChangeError } from "../domain/errors.js";
import { formatLsn, parseLsn } from "../domain/lsn.js";
import { fromLegacyRow } from "../domain/product.js";
import { confirmApplied } from "./confirm.js";
import { SOURCE_TABLE, backfillFromNewSlot, inspectSlotLoss, replicationClientConfig, type SourceOptions } from "./source.js";
import { createSyncProgress, type SyncStatus } from "./sync-status.js";

export interface CdcReaderOptions {
  store: CatalogStore;
  source: SourceOptions & { publication: string };
  logger: Logger;
  /** Reconnect delays: doubling from `initialMs` up to `maxMs`, jittered. */
  backoff?: { initialMs: number; maxMs: number };
  /**
   * Called after a source transaction's catalog transaction commits and before the source is
   * told (the applied-changes counter). Until it returns, the transaction is unacknowledged.
   */
  onApplied?: (changes: number) => Promise<void> | void;
  /** Called, like onApplied, with the changes the store held: they met a write taken here not yet seen back (catalog-store.ts). */
  onHeld?: (changes: number) => Promise<void> | void;
}

export interface CdcReader {
  status(): SyncStatus;
  /** Disconnects from the source; what is applied stays applied, the rest waits in the slot. */
  stop(): Promise<void>;
}

const defaultBackoff = { initialMs: 250, maxMs: 10_000 };

/** A source transaction being received: its net change per SKU. */
interface Receiving {
  /** When the source committed it. */
  committedAt: Date;
  truncated: boolean;
  changes: Map<string, ProductChange>;
}

const isSourceTable = (relation: Pgoutput.MessageRelation) => relation.schema === SOURCE_TABLE.schema && relation.name === SOURCE_TABLE.name;

/**
 * Change data capture from the old shop: backfills from a new permanent slot's snapshot if
 * the catalog has no position, then streams the slot (pgoutput) from the stored position,
 * applying each source transaction in one catalog transaction and acknowledging it only
 * after that commits. Reconnects with backoff while the source is away; the slot keeps every
 * change meanwhile. It halts for good, logged as an error and reported (state halted, with
 * why), at a change it cannot map, and when the source has invalidated or dropped the slot
 * (its changes are gone; it never creates a slot again over a stored position): the catalog
 * never diverges from the source silently.
 */
export function startCdcReader(options: CdcReaderOptions): CdcReader {
  const { store, source, logger } = options;
  const backoff = options.backoff ?? defaultBackoff;
  const log = logger.child({ component: "cdc", slot: source.slot });
  const progress = createSyncProgress(source.slot);
  const stopping = new AbortController();
  let service: LogicalReplicationService | undefined;
  /** The catalog transaction being applied, which stop() lets finish before the pool closes. */
  let applying: Promise<unknown> = Promise.resolve();

  async function ensurePosition() {
    const stored = await store.readPosition();
    if (stored) return stored;
    progress.state = "backfilling";
    const written = await backfillFromNewSlot(source, (lsn, rows) => store.writeSnapshot(lsn, rows));
    const position = await store.readPosition();
    if (!position) throw new Error("the backfill committed no position");
    log.info({ products: written, lsn: formatLsn(position.lsn) }, "backfilled the catalog from the slot's snapshot");
    return position;
  }

  /** One connection's stream, until it ends: rejects with why, resolves only when stopped. */
  async function stream(from: bigint, progressed: () => void) {
    // Counts messages as they arrive, so a keepalive can tell whether everything before it has been handled.
    let received = 0;
    let handled = 0;
    const plugin = new (class extends PgoutputPlugin {
      override parse(buffer: Buffer) {
        received++;
        return super.parse(buffer);
      }
    })({ protoVersion: 1, publicationNames: [source.publication] });
    // Acknowledged by hand, after each commit; never on a timer, which would confirm what is not applied yet.
    const replication = new LogicalReplicationService(replicationClientConfig(source.url), { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } });
    service = replication;
    let receiving: Receiving | undefined;
    let failure: unknown;
    const fail = (err: unknown) => {
      failure ??= err;
      void replication.stop();
    };

    async function handle(message: Pgoutput.Message) {
      switch (message.tag) {
        case "begin":
          const committedAtMs = Number(BigInt(message.commitTime.toString()) / 1000n);
          receiving = { committedAt: new Date(committedAtMs), truncated: false, changes: new Map() };
          if (message.commitLsn) progress.heard(parseLsn(message.commitLsn));
          progress.pending(committedAtMs);
          return;
        case "insert":
        case "update": {
          if (!isSourceTable(message.relation)) return;
          const product = fromLegacyRow(message.new);
          const oldSku: unknown = message.tag === "update" ? message.key?.["sku"] : undefined;
          if (typeof oldSku === "string" && oldSku !== product.sku) current().changes.set(oldSku, { kind: "delete", sku: oldSku });
          current().changes.set(product.sku, { kind: "upsert", product });
          return;
        }
        case "delete": {
          if (!isSourceTable(message.relation)) return;
          const sku: unknown = message.key?.["sku"] ?? message.old?.["sku"];
          if (typeof sku !== "string") throw new UnmappableChangeError(String(sku), "sku", "missing from a delete (the table's replica identity must include it)");
          current().changes.set(sku, { kind: "delete", sku });
          return;
        }
        case "truncate":
          if (!message.relations.some(isSourceTable)) return;
          current().changes.clear();
          current().truncated = true;
          return;
        case "commit": {
          const transaction = current();
          if (!message.commitEndLsn) throw new Error("a commit arrived without its end LSN");
          const endLsn = parseLsn(message.commitEndLsn);
          const { truncated, changes } = transaction;
          const outcome = truncated || changes.size > 0 ? store.applyTransaction({ endLsn, truncated, changes }) : Promise.resolve({ applied: 0, skipped: true, held: 0 });
          applying = outcome.catch(() => {});
          const { applied, skipped, held } = await outcome;
          progress.applied(endLsn, new Date(), applied);
          progressed();
          // The store logs what it held, with the SKUs.
          if (held > 0) await options.onHeld?.(held);
          if (!skipped && applied > 0) await options.onApplied?.(applied);
          // Heard of WAL past it (a keepalive while this applied)? Ask for a keepalive now, whose
          // WAL end shows the catalog caught up, rather than report lag until the next one comes.
          const behind = progress.sourceLsn !== undefined && progress.sourceLsn > endLsn;
          await confirmApplied(replication, endLsn, behind);
          // Only now is the stream idle: a keepalive before this must not confirm past the transaction.
          receiving = undefined;
          return;
        }
        default:
          return; // relation, type, origin, message: nothing of the catalog's
      }
    }
    const current = () => {
      if (!receiving) throw new Error("a change arrived outside a transaction");
      return receiving;
    };

    replication.on("start", () => {
      progress.contact();
      progress.state = "streaming";
      log.info({ from: formatLsn(from) }, "streaming changes from the old shop");
    });
    replication.on("error", fail);
    replication.on("data", async (_lsn: string, message: Pgoutput.Message) => {
      handled++;
      progress.contact();
      if (failure !== undefined) return;
      try {
        await handle(message);
      } catch (err) {
        fail(err);
      }
    });
    replication.on("heartbeat", (walEnd: string, _time: number, shouldRespond: boolean) => {
      const end = parseLsn(walEnd);
      progress.contact();
      progress.heard(end);
      // Everything the server sent before this keepalive is applied: the slot holds nothing
      // for the catalog below its WAL end, so that is where the catalog stands (the built-in
      // apply worker reports the same when it has no transaction pending).
      const idle = received === handled && receiving === undefined && failure === undefined;
      if (idle) {
        progress.applied(end, progress.appliedTime ?? new Date(), 0);
        progressed();
      }
      if (idle || shouldRespond) void confirmApplied(replication, progress.appliedLsn ?? from);
    });
    try {
      await replication.subscribe(plugin, source.slot, formatLsn(from));
    } catch (err) {
      failure ??= err;
    } finally {
      await replication.stop();
    }
    if (failure !== undefined) throw failure;
    if (!stopping.signal.aborted) throw new Error("the replication stream ended");
  }

  /** Stops the reader for good, loudly: retrying cannot help, only an operator can. */
  function halt(reason: string, fields: Record<string, unknown>) {
    progress.halt(reason);
    log.error({ ...fields, reason }, `change capture HALTED: ${reason}`);
  }

  /** Why a stream from `lsn` can never succeed again (the slot is lost), or undefined; a source that cannot be asked is an outage. */
  async function slotLost(lsn: bigint) {
    const loss = await inspectSlotLoss(source).catch(() => undefined);
    if (loss === undefined) return undefined;
    return `${loss}: its changes since ${formatLsn(lsn)} are gone; re-backfill: delete from catalog.cdc_position where slot = '${source.slot}' and restart the catalog (it drops what is left of the slot, creates it again and copies ${SOURCE_TABLE.schema}.${SOURCE_TABLE.name} afresh)`;
  }

  async function run() {
    let failures = 0;
    while (!stopping.signal.aborted) {
      let streamedFrom: bigint | undefined;
      try {
        const position = await ensurePosition();
        progress.applied(position.lsn, position.appliedAt, 0);
        streamedFrom = position.lsn;
        // The backoff starts over once the stream moves on, not merely when it connects: a
        // transaction that fails every time it is applied is retried ever more slowly.
        await stream(position.lsn, () => (failures = 0));
      } catch (err) {
        if (stopping.signal.aborted) break;
        if (err instanceof UnmappableChangeError) {
          halt(`a source change cannot be mapped (${err.message}); the catalog applies nothing more until the old shop's row (or the mapping) is fixed and the catalog restarted`, { err, sku: err.sku, field: err.field });
          return;
        }
        // With a position stored, the slot must still hold every change after it; asked only once a stream failed.
        // Lost since the furthest position applied: this stream may have moved past where it started.
        const lost = streamedFrom === undefined ? undefined : await slotLost(progress.appliedLsn ?? streamedFrom);
        if (lost !== undefined) {
          halt(lost, { err });
          return;
        }
        log.warn({ err }, "change capture disconnected; reconnecting");
      }
      progress.state = "disconnected";
      const delay = Math.min(backoff.initialMs * 2 ** failures++, backoff.maxMs) * (0.5 + Math.random() / 2);
      await sleep(delay, undefined, { signal: stopping.signal }).catch(() => {});
    }
    progress.state = "disconnected";
  }

  const running = run();
  return {
    status: () => progress.snapshot(),
    async stop() {
      stopping.abort();
      await service?.stop();
      await running;
      await applying;
    },
  };
}
