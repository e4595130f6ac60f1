/**
 * `npm run dlq -- list` shows the dead letters in SHOP_DLQ;
 * `npm run dlq -- replay <seq>...` (or `replay --all`) sends them back to their subjects.
 * Uses NATS_URL, else nats://127.0.0.1:4222.
 */
import { connectBus } from "../bus/connection.js";
import { listDeadLetters, replayDeadLetter } from "../bus/dead-letters.js";
import { createLogger } from "../logger.js";

const [command, ...args] = process.argv.slice(2);
if (command !== "list" && command !== "replay") {
  console.error("usage: npm run dlq -- list | replay <seq>... | replay --all");
  process.exit(2);
}
const connection = connectBus({ url: process.env["NATS_URL"] ?? "nats://127.0.0.1:4222", name: "dlq-cli", logger: createLogger("dlq", "warn") });
const bus = await Promise.race([connection.ready, new Promise<never>((_, fail) => setTimeout(() => fail(new Error("NATS not reachable within 10 s")), 10_000))]);
try {
  const letters = await listDeadLetters(bus.jsm).catch(() => []);
  if (command === "list") {
    if (letters.length === 0) console.log("no dead letters");
    for (const l of letters) {
      console.log(`#${l.seq}  ${l.time.toISOString()}  consumer=${l.consumer}  ${l.originalSubject}  id=${l.eventId}  deliveries=${l.deliveries}\n      reason: ${l.reason}`);
    }
  } else {
    const seqs = args.includes("--all") ? letters.map((l) => l.seq) : args.map(Number);
    if (seqs.length === 0 || seqs.some((seq) => !Number.isInteger(seq))) throw new Error("name the sequences to replay, or --all");
    for (const seq of seqs) {
      await replayDeadLetter(bus, seq);
      console.log(`replayed #${seq}`);
    }
  }
} finally {
  await connection.close();
}
