import { maxLsn } from "../domain/lsn.js";

export type SyncState = "backfilling" | "streaming" | "disconnected" | "halted";

/** What GetSyncStatus and the lag metrics report of the change capture. */
export interface SyncStatus {
  slot: string;
  state: SyncState;
  /** The last source position applied (committed with its rows); undefined before the backfill. */
  appliedLsn: bigint | undefined;
  /** The newest source position heard of: a transaction's end announced, a keepalive's WAL end. */
  sourceLsn: bigint | undefined;
  /** As last known: while not streaming, the source's WAL end cannot be heard. */
  lagBytes: bigint;
  /**
   * How long the oldest change heard of but not applied has waited; 0 when caught up. While not
   * streaming, at least the time since the source was last heard from: an outage is not health.
   */
  lagMs: number;
  appliedTime: Date | undefined;
  /** Changes applied since this process started. */
  appliedChanges: number;
  /** Why the reader stopped for good (state halted) until an operator acts and restarts it. */
  halted: string | undefined;
}

/** The reader's view of how far it is, kept as it streams; `snapshot` derives the lag. */
export function createSyncProgress(slot: string, now: () => number = Date.now) {
  const progress = {
    state: "disconnected" as SyncState,
    appliedLsn: undefined as bigint | undefined,
    appliedTime: undefined as Date | undefined,
    sourceLsn: undefined as bigint | undefined,
    /** Commit time (ms) of the oldest transaction heard of and not yet applied. */
    oldestPendingCommitMs: undefined as number | undefined,
    /** When the source last said anything (a message, a keepalive, a stream starting); the reader's start before that. */
    lastHeardMs: now(),
    appliedChanges: 0,
    halted: undefined as string | undefined,

    /** The source said something: it is there. */
    contact() {
      progress.lastHeardMs = now();
    },
    heard(lsn: bigint) {
      progress.sourceLsn = progress.sourceLsn === undefined ? lsn : maxLsn(progress.sourceLsn, lsn);
    },
    pending(commitMs: number) {
      progress.oldestPendingCommitMs ??= commitMs;
    },
    applied(lsn: bigint, at: Date, changes: number) {
      progress.appliedLsn = progress.appliedLsn === undefined ? lsn : maxLsn(progress.appliedLsn, lsn);
      progress.appliedTime = at;
      progress.appliedChanges += changes;
      progress.oldestPendingCommitMs = undefined;
      progress.heard(lsn);
    },
    /** Stops reporting progress for good: only an operator can move the capture on. */
    halt(reason: string) {
      progress.state = "halted";
      progress.halted = reason;
    },

    snapshot(): SyncStatus {
      const { appliedLsn, sourceLsn } = progress;
      const lagBytes = appliedLsn !== undefined && sourceLsn !== undefined && sourceLsn > appliedLsn ? sourceLsn - appliedLsn : 0n;
      const pendingMs = progress.oldestPendingCommitMs === undefined ? 0 : now() - progress.oldestPendingCommitMs;
      const unheardMs = progress.state === "disconnected" || progress.state === "halted" ? now() - progress.lastHeardMs : 0;
      return {
        slot,
        state: progress.state,
        appliedLsn,
        sourceLsn,
        lagBytes,
        lagMs: Math.max(0, pendingMs, unheardMs),
        appliedTime: progress.appliedTime,
        appliedChanges: progress.appliedChanges,
        halted: progress.halted,
      };
    },
  };
  return progress;
}

export type SyncProgress = ReturnType<typeof createSyncProgress>;
