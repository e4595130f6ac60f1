import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeadLetterSchema, type DeadLetter } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { DLQ_SUBJECT, listDeadLetters, replayDeadLetter, type BusConnection, type Logger } from "#platform";
import { deadLetterStream } from "#shop/streams.js";

/** ListDeadLetters shows this many, oldest first (the contract's bound). */
const MAX_LISTED = 100;

export interface OperatorDeadLetters {
  list(): Promise<DeadLetter[]>;
  /** Replays one, logging who did it; NOT_FOUND for an unknown sequence. */
  replay(sequence: bigint, operator: string): Promise<void>;
}

/**
 * The dead letters of SHOP_DLQ, over a NATS connection of the console's user (whose
 * permissions allow reading and deleting from SHOP_DLQ alone, and republishing to the
 * subjects a consumer reads: the gateway's own user may do neither, and the operator's
 * user, which may do much more, is never the gateway's). Without one (CONSOLE_NATS_URL
 * unset) both calls are FAILED_PRECONDITION.
 */
export function createOperatorDeadLetters(options: { connection: BusConnection | undefined; logger: Logger }): OperatorDeadLetters {
  const { connection } = options;
  const bus = async () => {
    if (!connection) throw new ConnectError("dead letters need the console's NATS user: CONSOLE_NATS_URL is not set", Code.FailedPrecondition);
    // connectBus retries forever; an operator's call should not wait for that.
    return Promise.race([connection.ready, new Promise<never>((_, fail) => setTimeout(() => fail(new ConnectError("NATS is not reachable", Code.Unavailable)), 5_000).unref())]);
  };
  return {
    async list() {
      const { jsm } = await bus();
      // Read no further than shown: the stream may hold thousands after an outage.
      const letters = await listDeadLetters(jsm, deadLetterStream, { limit: MAX_LISTED });
      return letters.map((l) =>
        create(DeadLetterSchema, { sequence: BigInt(l.seq), time: timestampFromDate(l.time), consumer: l.consumer, originalSubject: l.originalSubject, eventId: l.eventId, deliveries: l.deliveries, reason: l.reason }),
      );
    },
    async replay(sequence, operator) {
      if (sequence <= 0n || sequence > BigInt(Number.MAX_SAFE_INTEGER)) throw new ConnectError("sequence: must be a dead letter's sequence (from ListDeadLetters)", Code.InvalidArgument);
      const live = await bus();
      const seq = Number(sequence);
      const stored = await live.jsm.streams.getMessage(deadLetterStream.name, { seq }).catch(() => null);
      if (!stored) throw new ConnectError(`no dead letter with sequence ${seq}`, Code.NotFound);
      await replayDeadLetter(live, deadLetterStream, seq);
      // The audit of a replay: who, which letter, where it went.
      options.logger.info({ audit: "dead-letter-replay", operator, sequence: seq, subject: stored.header.get(DLQ_SUBJECT), eventId: stored.header.get("ce-id") }, "dead letter replayed by an operator");
    },
  };
}
