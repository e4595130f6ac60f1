import type { LogicalReplicationService } from "pg-logical-replication";
import { formatLsn } from "../domain/lsn.js";

/**
 * Tells the source the catalog has applied everything up to `applied` (a commit's end LSN, or
 * a keepalive's WAL end while idle), exactly: that is the position a logical subscriber
 * confirms. pg-logical-replication's acknowledge(lsn) reports lsn + 1 as written, flushed and
 * applied, so it is given the byte before. Confirming one byte past would lose a transaction:
 * after a reconnect Postgres skips every transaction whose commit record starts before the
 * confirmed position, and the next commit record can start exactly at this one's end.
 * Position 0 confirms nothing and is not sent (the library cannot be made to send it).
 */
export function confirmApplied(replication: Pick<LogicalReplicationService, "acknowledge">, applied: bigint, ping = false): Promise<boolean> {
  if (applied <= 0n) return Promise.resolve(false);
  // The inverse of the library's increment: bigint arithmetic borrows from the high word when the low one is 0.
  return replication.acknowledge(formatLsn(applied - 1n), ping);
}
