import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";

/**
 * Events travel as CloudEvents in binary mode: the payload is the protobuf message, and the
 * envelope is headers. `ce-id` is also the Nats-Msg-Id, so JetStream drops a republished
 * event, and it is the key consumers dedupe on. `traceparent` carries the W3C trace context.
 */
export interface EventEnvelope {
  id: string;
  /** Fully qualified protobuf message name, e.g. shop.order.v1.OrderConfirmed. */
  type: string;
  source: string;
  time: Date;
  /** Extra headers such as traceparent, copied through untouched. */
  extra?: Record<string, string>;
}

export const PROTOBUF_CONTENT_TYPE = "application/protobuf";

export function toHeaders(envelope: EventEnvelope): MsgHdrs {
  const h = natsHeaders();
  h.set("ce-specversion", "1.0");
  h.set("ce-id", envelope.id);
  h.set("ce-type", envelope.type);
  h.set("ce-source", envelope.source);
  h.set("ce-time", envelope.time.toISOString());
  h.set("content-type", PROTOBUF_CONTENT_TYPE);
  for (const [key, value] of Object.entries(envelope.extra ?? {})) h.set(key, value);
  return h;
}

/** The envelope of a received message, or the name of the header that is missing. */
export function fromHeaders(h: MsgHdrs | undefined): { envelope: EventEnvelope } | { missing: string } {
  const id = h?.get("ce-id");
  if (!id) return { missing: "ce-id" };
  const type = h?.get("ce-type");
  if (!type) return { missing: "ce-type" };
  return { envelope: { id, type, source: h?.get("ce-source") ?? "", time: new Date(h?.get("ce-time") ?? 0) } };
}
