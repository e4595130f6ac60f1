import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { deadLetterSubject, type StreamSpec } from "./streams.js";

/** Headers a dead letter carries besides the original event's. */
export const DLQ_REASON = "dlq-reason";
export const DLQ_CONSUMER = "dlq-consumer";
export const DLQ_SUBJECT = "dlq-original-subject";
export const DLQ_STREAM_SEQ = "dlq-original-stream-seq";
export const DLQ_DELIVERIES = "dlq-deliveries";

/**
 * `text` with each run of control characters folded to one space, trimmed as a header value is
 * read back. A NATS header value may not hold \r or \n (nats.js throws, so the message would be
 * redelivered instead of parked), and error messages often do: a database error reads
 * "Failed query: ...\nparams: ...".
 */
function headerSafe(text: string): string {
  return text.replace(/\p{Cc}+/gu, " ").trim();
}

/**
 * Parks a message in the dead-letter stream (streams.ts, deadLetterStreamSpec) with why it could not be processed. The original subject,
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
  h.set(DLQ_REASON, headerSafe(reason).slice(0, 1000));
  h.set(DLQ_CONSUMER, consumer);
  h.set(DLQ_SUBJECT, message.subject);
  h.set(DLQ_STREAM_SEQ, String(message.streamSequence));
  h.set(DLQ_DELIVERIES, String(message.deliveries));
  await js.publish(deadLetterSubject(consumer), message.data, { headers: h, msgID: `dlq:${consumer}:${message.streamSequence}` });
}

export interface DeadLetter {
  /** Sequence in the dead-letter stream; the handle for replay. */
  seq: number;
  consumer: string;
  reason: string;
  originalSubject: string;
  eventId: string;
  eventType: string;
  deliveries: number;
  time: Date;
}

/**
 * The dead letters in `deadLetters`, oldest first: the first `limit` of them (unset: every one
 * there was when the listing began). Each read asks for the first message at or after a
 * sequence, so the gaps that replays leave cost nothing, and a bounded listing stops after
 * `limit` reads however many letters the stream holds.
 */
export async function listDeadLetters(jsm: JetStreamManager, deadLetters: StreamSpec, options: { limit?: number } = {}): Promise<DeadLetter[]> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  if (!(limit >= 1)) throw new RangeError(`limit must be at least 1, got ${limit}`);
  const info = await jsm.streams.info(deadLetters.name);
  const letters: DeadLetter[] = [];
  let seq = info.state.first_seq;
  while (info.state.messages > 0 && seq <= info.state.last_seq && letters.length < limit) {
    // STREAM.MSG.GET takes next_by_subj: the first message on that subject at or after seq.
    // The client's type names only seq, and it sends the query as it is given.
    const query = { seq, next_by_subj: ">" };
    const stored = await jsm.streams.getMessage(deadLetters.name, query);
    if (!stored || stored.seq > info.state.last_seq) break;
    const h = stored.header;
    letters.push({
      seq: stored.seq,
      consumer: h.get(DLQ_CONSUMER),
      reason: h.get(DLQ_REASON),
      originalSubject: h.get(DLQ_SUBJECT),
      eventId: h.get("ce-id"),
      eventType: h.get("ce-type"),
      deliveries: Number(h.get(DLQ_DELIVERIES) || 0),
      time: stored.time,
    });
    seq = stored.seq + 1;
  }
  return letters;
}

/**
 * Publishes a dead letter back to its original subject with its original headers, then
 * removes it from `deadLetters`. Every consumer of that subject sees it again; those that had
 * applied it already find it in their inbox and skip it.
 */
export async function replayDeadLetter(bus: { js: JetStreamClient; jsm: JetStreamManager }, deadLetters: StreamSpec, seq: number): Promise<void> {
  const stored = await bus.jsm.streams.getMessage(deadLetters.name, { seq });
  if (!stored) throw new Error(`no dead letter with sequence ${seq}`);
  const h = natsHeaders();
  for (const [key, values] of stored.header) {
    if (key.toLowerCase().startsWith("dlq-") || key === "Nats-Msg-Id") continue;
    for (const value of values) h.append(key, value);
  }
  // A fresh Nats-Msg-Id: the original one may still be inside the duplicate window.
  await bus.js.publish(stored.header.get(DLQ_SUBJECT), stored.data, { headers: h, msgID: `replay:${seq}:${stored.header.get("ce-id")}` });
  await bus.jsm.streams.deleteMessage(deadLetters.name, seq);
}
