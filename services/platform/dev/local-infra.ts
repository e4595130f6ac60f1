import { fork } from "node:child_process";
import { join, resolve } from "node:path";
import { integer, type Env } from "../config.js";
import { findNatsServer, natsInstallHint, startLocalNats } from "./local-nats.js";
import { isListening } from "./tcp.js";

export const repoRoot = resolve(import.meta.dirname, "../../..");

export interface Dependency {
  name: string;
  url: string;
  /** How it was obtained, for the start-up table. */
  source: string;
  stop(): Promise<void>;
}

const nothingToStop = async () => {};

/**
 * Postgres for local runs: DATABASE_URL if set; else embedded Postgres under .data/,
 * reused if it is already up (say, `npm start` runs while `npm run service` starts).
 */
export async function resolvePostgres(env: Env, log: (line: string) => void): Promise<Dependency> {
  if (env["DATABASE_URL"]) return { name: "postgres", url: env["DATABASE_URL"], source: "DATABASE_URL", stop: nothingToStop };
  const port = integer(env, "EMBEDDED_POSTGRES_PORT", 54329, { min: 1, max: 65535 });
  const url = `postgres://postgres:postgres@127.0.0.1:${port}/meshwork`;
  if (await isListening("127.0.0.1", port)) return { name: "postgres", url, source: "embedded, already running", stop: nothingToStop };
  const dataDir = join(repoRoot, ".data/postgres");
  const child = fork(join(import.meta.dirname, "local-postgres-main.ts"), [dataDir, String(port)], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "ignore", "pipe", "ipc"],
    detached: true, // Ctrl-C reaches the supervisor only; it stops Postgres last
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  await new Promise<void>((ready, fail) => {
    child.once("message", () => ready());
    child.once("exit", (code) => fail(new Error(`embedded Postgres exited (${code}):\n${stderr.join("").slice(-2000)}`)));
  });
  child.stderr?.removeAllListeners("data");
  child.stderr?.resume();
  log(`embedded Postgres up on 127.0.0.1:${port}, data in .data/postgres`);
  return {
    name: "postgres",
    url,
    source: "embedded, .data/postgres",
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * NATS for local runs: NATS_URL if set; else a server already on 127.0.0.1:4222; else
 * `nats-server -js` from PATH with its store under .data/nats; else a clear error.
 */
export async function resolveNats(env: Env, log: (line: string) => void): Promise<Dependency> {
  if (env["NATS_URL"]) return { name: "nats", url: env["NATS_URL"], source: "NATS_URL", stop: nothingToStop };
  if (await isListening("127.0.0.1", 4222)) return { name: "nats", url: "nats://127.0.0.1:4222", source: "already running", stop: nothingToStop };
  const binary = findNatsServer();
  if (!binary) throw new Error(natsInstallHint);
  const nats = await startLocalNats({ port: 4222, storeDir: join(repoRoot, ".data/nats"), binary, detached: true });
  log(`started ${binary} -js on 127.0.0.1:4222, store in .data/nats`);
  return { name: "nats", url: nats.url, source: `started ${binary}`, stop: () => nats.stop() };
}
