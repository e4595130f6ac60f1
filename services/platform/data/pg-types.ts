import { customType } from "drizzle-orm/pg-core";

/** Postgres bytea as a Uint8Array, for protobuf payloads. */
export const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (value) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
  fromDriver: (value) => new Uint8Array(value),
});
