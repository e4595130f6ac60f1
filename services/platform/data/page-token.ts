/**
 * Keyset pagination tokens: opaque to clients, base64url of the last row's sort key
 * (creation time, then id). Keyset paging stays fast and stable while rows are added,
 * which offset paging is not.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
    if (typeof id !== "string" || !UUID.test(id)) return undefined;
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
