import { deadLetterStreamSpec, eventStreamSpec, type StreamSpec } from "#platform";

/**
 * The shop's streams. Each bounded context owns one for the events it emits, SHOP_<CTX> on
 * subjects `shop.<ctx>.v1.<Event>`; the dead letters of every consumer share SHOP_DLQ.
 */
export const eventStream = (context: string): StreamSpec => eventStreamSpec(`SHOP_${context.toUpperCase()}`, [`shop.${context}.v1.>`]);

export const deadLetterStream: StreamSpec = deadLetterStreamSpec("SHOP_DLQ");
