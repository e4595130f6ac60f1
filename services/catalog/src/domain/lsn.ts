/**
 * Postgres WAL positions (LSNs), written "16/B374D848": two hex halves of a 64-bit byte
 * position. Held as bigints so they compare and subtract exactly.
 */
const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): bigint {
  const match = LSN_TEXT.exec(text);
  if (!match) throw new Error(`not an LSN: "${text}"`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** As Postgres prints it (upper case, unpadded), so stored positions read like pg_lsn's. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export const maxLsn = (a: bigint, b: bigint) => (a > b ? a : b);
