/**
 * Runs embedded Postgres as its own process for the supervisor, so that `npm start`'s Ctrl-C
 * reaches the supervisor alone and Postgres is stopped last, cleanly. Durable, as `npm start`
 * must be.
 * Usage: local-postgres-main.ts <dataDir> <port> <superuserPasswordFile> [<settings JSON>];
 * reports {"url"} over IPC when ready. Settings are server settings, e.g. {"wal_level":"logical"}
 * for the old shop's cluster. The password comes in a file (one line), never on the command line, where
 * every user of the machine could read it.
 */
import { readFileSync } from "node:fs";
import { startLocalPostgres } from "./local-postgres.js";

const [dataDir, port, passwordFile, settingsJson] = process.argv.slice(2);
if (!dataDir || !port || !passwordFile) throw new Error("usage: local-postgres-main.ts <dataDir> <port> <superuserPasswordFile> [<settings JSON>]");
const settings = settingsJson ? (JSON.parse(settingsJson) as Record<string, string>) : undefined;
const superuserPassword = readFileSync(passwordFile, "utf8").replace(/\r?\n$/, "");
const pg = await startLocalPostgres({ dataDir, port: Number(port), superuserPassword, ...(settings ? { settings } : {}), log: (line) => process.stderr.write(`${line}\n`) });
process.send?.({ url: pg.url });
let stopping: Promise<void> | undefined;
const stopAndExit = () => (stopping ??= pg.stop().then(() => process.exit(0)));
process.on("SIGTERM", stopAndExit);
process.on("SIGINT", stopAndExit);
// The supervisor going away without a word (SIGKILL) must not leave Postgres running.
process.on("disconnect", stopAndExit);
