import { deadLetterStreamSpec, eventStreamSpec } from "#platform/messaging/streams.js";

/**
 * The streams the kit's own tests publish order's events on and park dead letters in, named as
 * the shop names them (services/shop/streams.ts), but built from the kit's own helpers, so that
 * what the kit's messaging tests exercise does not hang on the shop's code.
 */
export const orderEventStream = eventStreamSpec("SHOP_ORDER", ["shop.order.v1.>"]);
export const testDeadLetterStream = deadLetterStreamSpec("SHOP_DLQ");
