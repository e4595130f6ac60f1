import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import type { JetStreamClient } from "@nats-io/jetstream";

/** Headers a dead letter carries besides the original event's. */
export const DLQ_REASON = "dlq-reason";
export const DLQ_CONSUMER = "dlq-consumer";
export const DLQ_SUBJECT = "dlq-original-subject";
export const DLQ_STREAM_SEQ = "dlq-original-stream-seq";
export const DLQ_DELIVERIES = "dlq-deliveries";

export const deadLetterSubject = (consumer: string) => `dlq.${consumer}`;

/**
 * Parks a message in SHOP_DLQ with why it could not be processed. The original subject,
 * payload and headers are kept so it can be replayed unchanged. The Nats-Msg-Id makes a
 * retried dead-lettering of the same delivery land once.
 */
export async function publishDeadLetter(
  js: JetStreamClient,
  message: { subject: string; data: Uint8Array; headers?: MsgHdrs; streamSequence: number; deliveries: number },
  consumer: string,
  reason: string,
): Promise<void> {
  const h = natsHeaders();
  for (const [key, values] of message.headers ?? []) for (const value of values) h.append(key, value);
  h.set(DLQ_REASON, reason.slice(0, 1000));
  h.set(DLQ_CONSUMER, consumer);
  h.set(DLQ_SUBJECT, message.subject);
  h.set(DLQ_STREAM_SEQ, String(message.streamSequence));
  h.set(DLQ_DELIVERIES, String(message.deliveries));
  await js.publish(deadLetterSubject(consumer), message.data, { headers: h, msgID: `dlq:${consumer}:${message.subject}:${message.streamSequence}` });
}
