import { and, asc, desc, eq, gt, lt, or, type SQL } from "drizzle-orm";
import type { PgColumn } from "drizzle-orm/pg-core";
import { InvalidArgumentError } from "../domain/errors.js";
import { isUuid } from "../domain/input.js";

/**
 * Keyset pagination: a list is read in (creation time, id) order, and a page token is the
 * last row's key, base64url and opaque to clients. Keyset paging stays fast and stable while
 * rows are added, which offset paging is not.
 */
export interface PageKey {
  createdAt: Date;
  id: string;
}

export function encodePageToken(key: PageKey): string {
  return Buffer.from(JSON.stringify({ t: key.createdAt.toISOString(), id: key.id })).toString("base64url");
}

/** The key in a token, or undefined if the token was not made by encodePageToken. */
export function decodePageToken(token: string): PageKey | undefined {
  try {
    const { t, id } = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { t: unknown; id: unknown };
    const createdAt = new Date(String(t));
    // Only what encodePageToken can produce: a UUID, and a time Postgres can compare.
    if (typeof id !== "string" || !isUuid(id)) return undefined;
    const year = createdAt.getUTCFullYear();
    if (Number.isNaN(year) || year < 2000 || year > 9999) return undefined;
    return { createdAt, id };
  } catch {
    return undefined;
  }
}

/** Clamps a requested page size: 0 means the default. */
export function pageSize(requested: number, defaults = { size: 20, max: 100 }): number {
  return Math.min(requested || defaults.size, defaults.max);
}

/** A list call's paging, checked: how many rows a page holds, and the key it resumes after. */
export interface PageRequest {
  size: number;
  after: PageKey | undefined;
}

/**
 * A list call's page_size and page_token, checked; bad input names the field. `list` names
 * the call whose tokens are accepted, as in "is not a token returned by ListOrders".
 */
export function pageRequest(request: { pageSize: number; pageToken: string }, list: string): PageRequest {
  if (request.pageSize < 0) throw new InvalidArgumentError("page_size", "must not be negative");
  const after = request.pageToken ? decodePageToken(request.pageToken) : undefined;
  if (request.pageToken && !after) throw new InvalidArgumentError("page_token", `is not a token returned by ${list}`);
  return { size: pageSize(request.pageSize), after };
}

/**
 * One page: `read` is asked for a row more than the page holds, and that row, if it comes,
 * says another page follows, whose token is the page's last key.
 */
export async function readPage<T extends PageKey>(request: PageRequest, read: (limit: number, after: PageKey | undefined) => Promise<T[]>): Promise<{ rows: T[]; nextPageToken: string }> {
  const rows = await read(request.size + 1, request.after);
  const page = rows.slice(0, request.size);
  return { rows: page, nextPageToken: rows.length > request.size ? encodePageToken(page[page.length - 1]!) : "" };
}

/** A table's key columns, and which way its list runs. */
export interface Keyset {
  createdAt: PgColumn;
  id: PgColumn;
  order: "newest-first" | "oldest-first";
}

/** The rows strictly after `after` in the keyset's order; undefined (every row) for the first page. */
export function keysetAfter({ createdAt, id, order }: Keyset, after: PageKey | undefined): SQL | undefined {
  if (!after) return undefined;
  const beyond = order === "newest-first" ? lt : gt;
  return or(beyond(createdAt, after.createdAt), and(eq(createdAt, after.createdAt), beyond(id, after.id)));
}

/** The ORDER BY of the keyset's list. */
export function keysetOrder({ createdAt, id, order }: Keyset): SQL[] {
  const direction = order === "newest-first" ? desc : asc;
  return [direction(createdAt), direction(id)];
}
