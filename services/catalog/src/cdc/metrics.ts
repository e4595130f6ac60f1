import type { Metrics } from "#platform";
import type { CdcReader } from "./reader.js";

/** The change capture's lag and halt on the ops port's /metrics, read at scrape time. */
export function registerCdcGauges(metrics: Metrics, reader: CdcReader) {
  metrics.gauge("catalog_cdc_lag_bytes", "WAL bytes between the newest source position heard of and the one applied (as last known while not streaming)", [], async () => [{ value: Number(reader.status().lagBytes) }]);
  metrics.gauge("catalog_cdc_lag_seconds", "How long the oldest source change not yet applied has waited, at least the time since the source was last heard from while not streaming; 0 when caught up", [], async () => [
    { value: reader.status().lagMs / 1000 },
  ]);
  metrics.gauge("catalog_cdc_halted", "1 while the change capture is halted until an operator acts (GetSyncStatus.halted_reason says why)", [], async () => [{ value: reader.status().state === "halted" ? 1 : 0 }]);
}
