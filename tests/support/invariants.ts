import { expect } from "vitest";
import type { connect } from "./databases.js";
import { settleInvariants } from "./invariant-violations.js";

type Sql = ReturnType<typeof connect>;

/**
 * The business invariants no crash may break (see invariant-violations.ts), asserted for a
 * test: every order turns terminal within `timeoutMs`, then money, stock and events must
 * hold, the latter two settling within another `timeoutMs`.
 */
export async function expectInvariants(sql: Sql, options: { timeoutMs?: number } = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  expect(await settleInvariants(sql, { terminalWithinMs: timeoutMs, settleWithinMs: timeoutMs }), "invariants violated").toEqual([]);
}
