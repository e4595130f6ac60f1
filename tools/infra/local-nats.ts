import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { natsPasswordVariable, natsServerConfig, type NatsUser } from "./nats-accounts.js";
import { isListening, waitForPort } from "./tcp.js";

export const natsInstallHint =
  "nats-server was not found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install nats-server`; " +
  "macOS: `brew install nats-server`) or set NATS_URL to a running server with JetStream enabled.";

export function findNatsServer(): string | undefined {
  const found = spawnSync("sh", ["-c", "command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null"], { encoding: "utf8" });
  return found.stdout.split("\n")[0]?.trim() || undefined;
}

export interface LocalNats {
  /** The server's address, without credentials. */
  readonly url: string;
  /** The address with `name`'s credentials in its userinfo, as NATS_URL carries them. */
  urlFor(name: string): string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** A NATS user's URL, credentials in its userinfo as the services read them from NATS_URL. */
export const natsUserUrl = (host: string, port: number, name: string, password: string) =>
  `nats://${encodeURIComponent(name)}:${encodeURIComponent(password)}@${host}:${port}`;

export interface LocalNatsOptions {
  port: number;
  /** Interface to listen on; 127.0.0.1 by default. */
  host?: string;
  storeDir: string;
  /**
   * The users the server admits, each with its password; no one else gets in. Left out,
   * the server admits anyone with every permission: only for benches of the broker alone.
   */
  users?: readonly NatsUser[];
  passwords?: Readonly<Record<string, string>>;
  /** Where the generated config goes; by default nats.conf beside the store directory. */
  configFile?: string;
  binary?: string;
  detached?: boolean;
}

/**
 * Writes the server's config (0600, though it holds no secret: the passwords reach the
 * server in its environment alone, never in its arguments or a file).
 *
 * nats-server parses a variable's value as config, not as a string: "-abc", "1e5x" or
 * "12345" fail or turn into numbers. Quoted, any password reads back as itself.
 */
function writeConfig(options: LocalNatsOptions & { host: string; users: readonly NatsUser[] }): { args: string[]; env: NodeJS.ProcessEnv } {
  const env: NodeJS.ProcessEnv = {};
  for (const user of options.users) {
    const password = options.passwords?.[user.name];
    if (!password) throw new Error(`no NATS password given for user "${user.name}"`);
    // Nothing that would end the quoted string, or need escaping in it or in a URL's userinfo.
    if (/["\\\s]/.test(password) || /\p{Cc}/u.test(password)) throw new Error(`the NATS password of "${user.name}" has a quote, backslash, space or control character`);
    env[natsPasswordVariable(user.name)] = `"${password}"`;
  }
  const file = options.configFile ?? join(dirname(options.storeDir), "nats.conf");
  mkdirSync(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, natsServerConfig({ port: options.port, host: options.host, storeDir: resolve(options.storeDir), users: options.users }), { mode: 0o600 });
  renameSync(temporary, file);
  return { args: ["-c", file], env };
}

/**
 * A real nats-server with JetStream on `host` (127.0.0.1 by default), its file store under
 * `storeDir`. With `users`, from a generated config of one user per name with its
 * permissions, and the passwords in the child's environment only (it inherits no other
 * variable of ours).
 */
export async function startLocalNats(options: LocalNatsOptions): Promise<LocalNats> {
  const binary = options.binary ?? findNatsServer();
  if (!binary) throw new Error(natsInstallHint);
  const host = options.host ?? "127.0.0.1";
  // Else the wait below would take another server (the machine's own, say) for ours.
  if (await isListening(host, options.port)) throw new Error(`${host}:${options.port} is taken; nats-server needs a free port`);
  mkdirSync(options.storeDir, { recursive: true, mode: 0o700 });
  const { args, env } = options.users
    ? writeConfig({ ...options, host, users: options.users })
    : { args: ["-js", "-a", host, "-p", String(options.port), "-sd", options.storeDir], env: {} };
  // Its output is not kept: a detached server outlives us, and would die writing to a closed pipe.
  const child = spawn(binary, args, { stdio: "ignore", detached: options.detached ?? false, env });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // Why it exited, from the server's own check of the same config and environment.
  const whyExited = () => new Error(`nats-server exited at start: ${spawnSync(binary, ["-t", ...args], { env, encoding: "utf8" }).stderr.trim().slice(-1000) || "no reason given"}`);
  try {
    await Promise.race([waitForPort(host, options.port, 10_000), exited.then(() => Promise.reject(whyExited()))]);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  const url = `nats://${host}:${options.port}`;
  return {
    url,
    urlFor(name) {
      const password = options.passwords?.[name];
      if (!options.users?.some((user) => user.name === name) || !password) throw new Error(`NATS user "${name}" is not one of this server's users`);
      return natsUserUrl(host, options.port, name, password);
    },
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
