import { fromBinary, type DescFile, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { nanos } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, JetStreamApiError, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import { sql } from "drizzle-orm";
import { isDatabaseUnavailable } from "../data/db-errors.js";
import { isUuid } from "../domain/input.js";
import type { InboxTable } from "./inbox.js";
import type { Logger } from "../process/logger.js";
import { rowsOf, type SqlExecutor } from "../data/db.js";
import type { Bus, BusConnection } from "./connection.js";
import { publishDeadLetter } from "./dead-letters.js";
import { fromHeaders, type EventEnvelope } from "./event-headers.js";
import { ensureStream, type StreamSpec } from "./streams.js";
import { contextFromHeaders, SpanKind, withSpan } from "../process/telemetry.js";

export interface EventHandler<Desc extends DescMessage = DescMessage> {
  schema: Desc;
  /** Applies the event inside `tx`, the transaction that also records it in the inbox. */
  handle(tx: SqlExecutor, event: MessageShape<Desc>, envelope: EventEnvelope): Promise<void>;
}

/** Pairs a handler with its event type, keeping the two in step for the type checker. */
export const on = <Desc extends DescMessage>(schema: Desc, handle: EventHandler<Desc>["handle"]): EventHandler => ({ schema, handle }) as EventHandler;

export interface EventConsumerOptions {
  bus: BusConnection;
  db: SqlExecutor;
  inbox: InboxTable;
  /** The stream consumed; the consumer filters on its subjects. */
  stream: StreamSpec;
  /** Where events that cannot be applied go (deadLetterStreamSpec); created, with the consumed stream's replicas, if missing. */
  deadLetters: StreamSpec;
  /** The contract that declares the stream's events: types in it that no handler takes are acked and skipped; any other type is dead-lettered. */
  contract: DescFile;
  /** Durable consumer name, also the inbox's consumer key. */
  durable: string;
  handlers: EventHandler[];
  logger: Logger;
  /** Deliveries before a failing event is dead-lettered. */
  maxDeliver?: number;
  /** Redelivery delay after the n-th failed delivery (the last entry repeats). */
  backoffMs?: number[];
  maxAckPending?: number;
  /** Messages applied in one transaction at most, when that many have arrived. */
  batchSize?: number;
}

export interface EventConsumer {
  /** Messages the consumer has yet to receive; undefined while NATS is unreachable. */
  lag(): Promise<number | undefined>;
  stop(): Promise<void>;
}

class PoisonMessageError extends Error {}

/**
 * A durable pull consumer with explicit acks. Each event is applied in one Postgres
 * transaction together with its inbox row, then acked; a redelivered event finds the row
 * and changes nothing. A failure naks with backoff; after `maxDeliver` deliveries, or at
 * once for a message that can never succeed (unknown type, undecodable payload), the message
 * goes to the dead-letter stream with its reason. Nothing is acked that was not applied or dead-lettered.
 *
 * Messages that have arrived while the previous batch was applied are applied together, in
 * arrival order, in one transaction: BEGIN, one inbox insert for all of them, their handlers,
 * COMMIT, instead of that for each. If any of them fails, none is committed, and each is
 * applied again on its own, so only the failing one naks or is dead-lettered.
 */
export function startEventConsumer(options: EventConsumerOptions): EventConsumer {
  const { db, inbox, durable } = options;
  const maxDeliver = options.maxDeliver ?? 5;
  const batchSize = options.batchSize ?? 64;
  const backoffMs = options.backoffMs ?? [200, 1_000, 5_000, 15_000];
  const log = options.logger.child({ component: "event-consumer", consumer: durable });
  const handlers = new Map(options.handlers.map((h) => [h.schema.typeName, h]));
  const declared = new Set(options.contract.messages.map((m) => m.typeName));
  let stopping = false;
  let messages: ConsumerMessages | undefined;
  // Until NATS first answers, there is nothing to wait for on stop.
  let connected = false;
  options.bus.ready.then(() => (connected = true), () => {});

  async function ensureConsumer(bus: Bus): Promise<void> {
    const config = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: options.stream.subjects[0]!,
      ack_wait: nanos(30_000),
      // Unbounded here: this code decides when to give up, and dead-letters rather than drops.
      max_deliver: -1,
      max_ack_pending: options.maxAckPending ?? 256,
    };
    try {
      await bus.jsm.consumers.info(options.stream.name, durable);
      await bus.jsm.consumers.update(options.stream.name, durable, config);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
      await bus.jsm.consumers.add(options.stream.name, config);
    }
  }

  /** An event ready to apply, or a message to ack unhandled (a declared type no handler takes). */
  type Decoded = { msg: JsMsg; envelope: EventEnvelope; handler: EventHandler; event: MessageShape<DescMessage> } | { msg: JsMsg; skip: true };

  /** Throws PoisonMessageError for a message that can never be applied. */
  function decode(msg: JsMsg): Decoded {
    const parsed = fromHeaders(msg.headers);
    if ("missing" in parsed) throw new PoisonMessageError(`missing header ${parsed.missing}`);
    const { envelope } = parsed;
    if (!isUuid(envelope.id)) throw new PoisonMessageError(`ce-id "${envelope.id.slice(0, 64)}" is not a UUID`);
    const handler = handlers.get(envelope.type);
    if (!handler) {
      if (declared.has(envelope.type)) return { msg, skip: true };
      throw new PoisonMessageError(`unknown event type "${envelope.type.slice(0, 128)}"`);
    }
    try {
      return { msg, envelope, handler, event: fromBinary(handler.schema, msg.data) };
    } catch (err) {
      throw new PoisonMessageError(`undecodable ${envelope.type} payload: ${(err as Error).message}`);
    }
  }

  type Applicable = Exclude<Decoded, { skip: true }>;

  /**
   * Applies the events in one transaction, in order. One statement records them all in the
   * inbox; an event it finds recorded already (a redelivery, or a second copy in this batch)
   * changes nothing.
   */
  async function apply(events: Applicable[]): Promise<void> {
    await db.transaction(async (tx) => {
      const recorded = await rowsOf<{ event_id: string }>(
        tx,
        sql`insert into ${inbox} (consumer, event_id, event_type)
            select ${durable}, id, type from unnest(${sql.param(events.map((e) => e.envelope.id))}::uuid[], ${sql.param(events.map((e) => e.envelope.type))}::text[]) as event(id, type)
            on conflict do nothing returning event_id`,
      );
      const fresh = new Set(recorded.map((row) => row.event_id));
      for (const { msg, envelope, handler, event } of events) {
        // Postgres answers a uuid in lower case, whatever case the ce-id was sent in.
        if (!fresh.delete(envelope.id.toLowerCase())) {
          log.debug({ seq: msg.seq }, "duplicate event; already applied");
          continue;
        }
        const carried = Object.fromEntries(["traceparent", "tracestate"].flatMap((key) => (msg.headers?.has(key) ? [[key, msg.headers.get(key)]] : [])));
        // A CONSUMER span in the trace that produced the event.
        await withSpan(`process ${msg.subject}`, SpanKind.CONSUMER, contextFromHeaders(carried), { "messaging.system": "nats", "messaging.consumer.group.name": durable }, () =>
          handler.handle(tx, event, envelope),
        );
      }
    });
  }

  async function deadLetter(bus: Bus, msg: JsMsg, reason: string): Promise<void> {
    await publishDeadLetter(
      bus.js,
      { subject: msg.subject, data: msg.data, ...(msg.headers ? { headers: msg.headers } : {}), streamSequence: msg.seq, deliveries: msg.info.deliveryCount },
      durable,
      reason,
    );
    msg.term(); // no reason text: nats-server before 2.10.4 ignores "+TERM <reason>"; the dead letter has it
    log.warn({ subject: msg.subject, seq: msg.seq, reason }, "dead-lettered");
  }

  /** Settles every message of a batch: applied and acked, skipped, dead-lettered or nak'd. */
  async function handleBatch(bus: Bus, batch: JsMsg[]): Promise<void> {
    const events: Applicable[] = [];
    for (const msg of batch) {
      let decoded: Decoded;
      try {
        decoded = decode(msg);
      } catch (err) {
        await settleFailure(bus, msg, err);
        continue;
      }
      if ("skip" in decoded) msg.ack();
      else events.push(decoded);
    }
    if (events.length > 0) await settle(bus, events);
  }

  async function settle(bus: Bus, events: Applicable[]): Promise<void> {
    try {
      await apply(events);
      for (const { msg } of events) msg.ack();
    } catch (err) {
      if (events.length > 1 && !isDatabaseUnavailable(err)) {
        // Which one failed is unknown, and none was committed: each goes again alone.
        for (const event of events) await settle(bus, [event]);
        return;
      }
      for (const { msg } of events) await settleFailure(bus, msg, err);
    }
  }

  async function settleFailure(bus: Bus, msg: JsMsg, err: unknown): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err);
    const poison = err instanceof PoisonMessageError;
    if (isDatabaseUnavailable(err)) {
      // Postgres is away: the event is fine, so it must not use up its deliveries.
      log.warn({ err, seq: msg.seq }, "database unavailable; event will be redelivered");
      msg.nak(backoffMs[backoffMs.length - 1]);
      return;
    }
    if (poison || msg.info.deliveryCount >= maxDeliver) {
      await deadLetter(bus, msg, poison ? reason : `failed ${msg.info.deliveryCount} deliveries; last error: ${reason}`).catch((dlqErr: unknown) => {
        log.error({ err: dlqErr }, "could not dead-letter; leaving the message for redelivery");
        msg.nak(backoffMs[backoffMs.length - 1]);
      });
      return;
    }
    const delay = backoffMs[Math.min(msg.info.deliveryCount - 1, backoffMs.length - 1)];
    log.warn({ err, seq: msg.seq, deliveries: msg.info.deliveryCount, retryInMs: delay }, "event failed; will be redelivered");
    msg.nak(delay);
  }

  /**
   * Hands the messages to handleBatch in arrival order, as many at a time as have arrived
   * (up to batchSize) while the previous batch was applied. Returns when the subscription
   * ends, or after the batch under way once the consumer stops.
   */
  async function consumeInBatches(bus: Bus, subscription: ConsumerMessages): Promise<void> {
    const arrived: JsMsg[] = [];
    let signal: (() => void) | undefined;
    let ended = false;
    const worker = (async () => {
      while (!stopping) {
        if (arrived.length === 0) {
          if (ended) return;
          await new Promise<void>((resolve) => (signal = resolve));
          continue;
        }
        await handleBatch(bus, arrived.splice(0, batchSize));
      }
    })();
    // A worker that fails ends the subscription too, so the consumer restarts instead of buffering.
    worker.catch((err: unknown) => subscription.stop(err as Error));
    try {
      for await (const msg of subscription) {
        arrived.push(msg);
        signal?.();
        if (stopping) break;
      }
    } finally {
      ended = true;
      signal?.();
      await worker;
    }
  }

  const running = (async () => {
    const bus = await options.bus.ready;
    while (!stopping) {
      try {
        // The stream is its owner's to create and configure; this consumer's NATS user may
        // only look it up, so until the owner has started, it waits.
        await bus.jsm.streams.info(options.stream.name);
        await ensureStream(bus.jsm, { ...options.deadLetters, replicas: options.stream.replicas ?? 1 });
        await ensureConsumer(bus);
        const consumer = await bus.js.consumers.get(options.stream.name, durable);
        messages = await consumer.consume({ max_messages: options.maxAckPending ?? 256 });
        if (stopping) break; // stop() ran while we were subscribing
        log.info({ stream: options.stream.name }, "consuming");
        await consumeInBatches(bus, messages);
      } catch (err) {
        if (stopping) break;
        if (err instanceof JetStreamApiError && err.status === 404) log.info({ stream: options.stream.name }, "waiting for the stream's owner to create it");
        else log.warn({ err }, "consumer interrupted; restarting");
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  })().catch((err: unknown) => {
    if (!stopping) log.error({ err }, "consumer stopped");
  });

  return {
    async lag() {
      if (!connected) return undefined;
      const { jsm } = await options.bus.ready;
      const info = await jsm.consumers.info(options.stream.name, durable).catch(() => undefined);
      return info ? info.num_pending + info.num_ack_pending : undefined;
    },
    async stop() {
      stopping = true;
      messages?.stop();
      if (connected) await running;
      messages?.stop();
    },
  };
}
