import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLocalNats, type LocalNats } from "../../services/platform/dev/local-nats.js";
import { freePort } from "../../services/platform/dev/tcp.js";

export interface TestNats {
  url: string;
  /** SIGKILLs the server; its store stays, as after a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port and store. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A nats-server of the suite's own, on a free port with its own store, so a suite can
 * kill it, and its streams and durable consumers are not shared with other suites.
 */
export async function startTestNats(): Promise<TestNats> {
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), "meshwork-nats-"));
  let server: LocalNats | undefined = await startLocalNats({ port, storeDir });
  return {
    url: server.url,
    async kill() {
      server?.process.kill("SIGKILL");
      await server?.stop();
      server = undefined;
    },
    async restart() {
      server = await startLocalNats({ port, storeDir });
    },
    async stop() {
      await server?.stop();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
