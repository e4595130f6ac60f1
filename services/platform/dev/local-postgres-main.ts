/**
 * Runs embedded Postgres as its own process for the supervisor, so that `npm start`'s Ctrl-C
 * reaches the supervisor alone and Postgres is stopped last, cleanly. Durable, as `npm start`
 * must be.
 * Usage: local-postgres-main.ts <dataDir> <port>; reports {"url"} over IPC when ready.
 */
import { startLocalPostgres } from "./local-postgres.js";

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) throw new Error("usage: local-postgres-main.ts <dataDir> <port>");
const pg = await startLocalPostgres({ dataDir, port: Number(port), log: (line) => process.stderr.write(`${line}\n`) });
process.send?.({ url: pg.url });
let stopping: Promise<void> | undefined;
const stopAndExit = () => (stopping ??= pg.stop().then(() => process.exit(0)));
process.on("SIGTERM", stopAndExit);
process.on("SIGINT", stopAndExit);
// The supervisor going away without a word (SIGKILL) must not leave Postgres running.
process.on("disconnect", stopAndExit);
