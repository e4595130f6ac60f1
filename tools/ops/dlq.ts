/**
 * `npm run dlq -- list` shows the dead letters in SHOP_DLQ;
 * `npm run dlq -- replay <seq>...` (or `replay --all`) sends them back to their subjects.
 * Signs in as the operator to the running mesh's NATS, both found in its state file
 * (.data/mesh.json, written by `npm start`; MESH_STATE_FILE names another); NATS_URL, with
 * the operator's credentials in it, overrides both. Never a well-known port: whoever
 * listens there is not necessarily the mesh.
 */
import { readFileSync } from "node:fs";
import { connectBus } from "#platform/messaging/connection.js";
import { listDeadLetters, replayDeadLetter } from "#platform/messaging/dead-letters.js";
import { deadLetterStream } from "#shop/streams.js";
import { createLogger } from "#platform/process/logger.js";
import { dataDir } from "../mesh/local-infra.js";
import { defaultMeshStateFile, readMeshState } from "../mesh/mesh-state.js";
import { OPERATOR } from "#platform/trust/mesh-identity.js";

function operatorNatsUrl(): string {
  if (process.env["NATS_URL"]) return process.env["NATS_URL"];
  const mesh = readMeshState(process.env, defaultMeshStateFile(dataDir));
  const url = new URL(mesh.natsUrl);
  url.username = OPERATOR;
  url.password = encodeURIComponent(readFileSync(mesh.operatorNatsPasswordFile, "utf8").trim());
  return url.href;
}

const [command, ...args] = process.argv.slice(2);
if (command !== "list" && command !== "replay") {
  console.error("usage: npm run dlq -- list | replay <seq>... | replay --all");
  process.exit(2);
}
let url: string;
try {
  url = operatorNatsUrl();
} catch (err) {
  console.error(`meshwork: ${(err as Error).message}`);
  process.exit(2);
}
const connection = connectBus({ url, name: "dlq-cli", logger: createLogger("dlq", "warn") });
const bus = await Promise.race([connection.ready, new Promise<never>((_, fail) => setTimeout(() => fail(new Error("NATS not reachable within 10 s")), 10_000))]);
try {
  const letters = await listDeadLetters(bus.jsm, deadLetterStream).catch(() => []);
  if (command === "list") {
    if (letters.length === 0) console.log("no dead letters");
    for (const l of letters) {
      console.log(`#${l.seq}  ${l.time.toISOString()}  consumer=${l.consumer}  ${l.originalSubject}  id=${l.eventId}  deliveries=${l.deliveries}\n      reason: ${l.reason}`);
    }
  } else {
    const seqs = args.includes("--all") ? letters.map((l) => l.seq) : args.map(Number);
    if (seqs.length === 0 || seqs.some((seq) => !Number.isInteger(seq))) throw new Error("name the sequences to replay, or --all");
    for (const seq of seqs) {
      await replayDeadLetter(bus, deadLetterStream, seq);
      console.log(`replayed #${seq}`);
    }
  }
} finally {
  await connection.close();
}
