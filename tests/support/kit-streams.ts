import { deadLetterStreamSpec, eventStreamSpec } from "#platform/messaging/streams.js";

/**
 * The streams the kit's own tests publish order's events on and park dead letters in, named as
 * the shop names them (services/shop/streams.ts), but built here: the kit's tests import no shop code.
 */
export const orderEventStream = eventStreamSpec("SHOP_ORDER", ["shop.order.v1.>"]);
export const testDeadLetterStream = deadLetterStreamSpec("SHOP_DLQ");
