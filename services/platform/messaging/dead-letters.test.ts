import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, type TestNats } from "#tests/support/nats.js";
import { silentLogger } from "#tests/support/silent-logger.js";
import { testDeadLetterStream } from "#tests/support/kit-streams.js";
import { connectBus, type BusConnection } from "./connection.js";
import { listDeadLetters, publishDeadLetter } from "./dead-letters.js";
import { ensureStream } from "./streams.js";

/**
 * Listing reads the dead-letter stream as the operator's NATS user does (npm run dlq, the
 * operator console): in order, across the gaps replays leave, and no further than asked.
 */
describe("listing dead letters", () => {
  let nats: TestNats;
  let suite: BusConnection;
  let operator: BusConnection;
  /** Dead-letter sequences, in the order they were parked. */
  const parked: number[] = [];

  beforeAll(async () => {
    nats = await startTestNats();
    suite = connectBus({ url: nats.url, name: "dead-letters-test", logger: silentLogger });
    operator = connectBus({ url: nats.urlFor("operator"), name: "dead-letters-operator", logger: silentLogger });
    const { js, jsm } = await suite.ready;
    await ensureStream(jsm, testDeadLetterStream);
    for (let i = 1; i <= 6; i++) {
      await publishDeadLetter(js, { subject: "shop.order.v1.OrderConfirmed", data: new Uint8Array([i]), streamSequence: i, deliveries: 3 }, "listing-test", `reason ${i}`);
    }
    const info = await jsm.streams.info(testDeadLetterStream.name);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) parked.push(seq);
    // A gap in the middle, as a replay leaves (which deletes the letter it republished).
    await jsm.streams.deleteMessage(testDeadLetterStream.name, parked[2]!);
  }, 30_000);
  afterAll(async () => {
    await operator?.close();
    await suite?.close();
    await nats?.stop();
  });

  it("lists every letter oldest first, skipping the replayed one", async () => {
    const letters = await listDeadLetters((await operator.ready).jsm, testDeadLetterStream);
    expect(letters.map((l) => l.reason)).toEqual(["reason 1", "reason 2", "reason 4", "reason 5", "reason 6"]);
    expect(letters.map((l) => l.seq)).toEqual([parked[0], parked[1], parked[3], parked[4], parked[5]]);
    expect(letters.every((l) => l.consumer === "listing-test" && l.originalSubject === "shop.order.v1.OrderConfirmed" && l.deliveries === 3)).toBe(true);
  });

  it("stops after `limit` letters, the oldest, counting none for the gap", async () => {
    const { jsm } = await operator.ready;
    expect((await listDeadLetters(jsm, testDeadLetterStream, { limit: 3 })).map((l) => l.reason)).toEqual(["reason 1", "reason 2", "reason 4"]);
    expect((await listDeadLetters(jsm, testDeadLetterStream, { limit: 1 })).map((l) => l.reason)).toEqual(["reason 1"]);
    expect(await listDeadLetters(jsm, testDeadLetterStream, { limit: 100 })).toHaveLength(5);
    await expect(listDeadLetters(jsm, testDeadLetterStream, { limit: 0 })).rejects.toThrow("limit must be at least 1, got 0");
  });
});
