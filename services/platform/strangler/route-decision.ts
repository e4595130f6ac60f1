import { createHash } from "node:crypto";
import type { RouteEntry } from "./route-table.js";

export type Side = "legacy" | "new";

export interface SideDecision {
  /** The side whose answer the caller gets. */
  serve: Side;
  /** Whether the new side is called too, its answer compared with the legacy one and dropped. */
  shadow: boolean;
}

/**
 * The caller's bucket for a method, 0 to 99: the first 4 bytes of sha256(method \0 key).
 * Stable across replicas and restarts, so a canary is sticky; the method in the hash keeps
 * the canaries of different methods from landing on the same callers.
 */
export function canaryBucketOf(method: string, stickyKey: string): number {
  return createHash("sha256").update(method).update("\0").update(stickyKey).digest().readUInt32BE(0) % 100;
}

/** The sticky key of a call: the customer when one is signed in, else the client's address. */
export const stickyKeyOf = (caller: { customerId?: string | undefined; clientAddress: string }) => (caller.customerId ? `customer:${caller.customerId}` : `address:${caller.clientAddress}`);

/** Which side serves a call, by the method's route and the caller's sticky key. */
export function decideSide(entry: RouteEntry, stickyKey: string): SideDecision {
  switch (entry.mode) {
    case "legacy":
      return { serve: "legacy", shadow: false };
    case "shadow":
      return { serve: "legacy", shadow: true };
    case "canary":
      return { serve: canaryBucketOf(entry.method, stickyKey) < entry.canaryPercent ? "new" : "legacy", shadow: false };
    case "new":
      return { serve: "new", shadow: false };
  }
}
