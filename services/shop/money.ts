import { create } from "@bufbuild/protobuf";
import { MoneySchema, type Money } from "#gen/shop/common/v1/money_pb.js";

/**
 * shop.common.v1.Money from a stored amount. Rows keep minor units as a JS number (exact to
 * 2^53); the wire type is int64, so it crosses as a bigint.
 */
export function toMoney(currency: string, minorUnits: number): Money {
  return create(MoneySchema, { currencyCode: currency, minorUnits: BigInt(minorUnits) });
}
