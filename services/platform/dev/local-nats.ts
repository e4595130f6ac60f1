import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { waitForPort } from "./tcp.js";

export const natsInstallHint =
  "nats-server was not found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install nats-server`; " +
  "macOS: `brew install nats-server`) or set NATS_URL to a running server with JetStream enabled.";

export function findNatsServer(): string | undefined {
  const found = spawnSync("sh", ["-c", "command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null"], { encoding: "utf8" });
  return found.stdout.split("\n")[0]?.trim() || undefined;
}

export interface LocalNats {
  readonly url: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** A real nats-server with JetStream on 127.0.0.1, its file store under `storeDir`. */
export async function startLocalNats(options: { port: number; storeDir: string; binary?: string; detached?: boolean }): Promise<LocalNats> {
  const binary = options.binary ?? findNatsServer();
  if (!binary) throw new Error(natsInstallHint);
  mkdirSync(options.storeDir, { recursive: true });
  const child = spawn(binary, ["-js", "-a", "127.0.0.1", "-p", String(options.port), "-sd", options.storeDir], {
    stdio: "ignore",
    detached: options.detached ?? false,
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    await Promise.race([waitForPort("127.0.0.1", options.port, 10_000), exited.then(() => Promise.reject(new Error("nats-server exited at start")))]);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return {
    url: `nats://127.0.0.1:${options.port}`,
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
