import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLocalNats, type LocalNats } from "#tools/infra/local-nats.js";
import { meshDeployables } from "#mesh";
import { meshNatsUsers, type NatsUser } from "#tools/infra/nats-accounts.js";
import { freePort } from "#tools/infra/tcp.js";

export interface TestNats {
  /**
   * The suite's own user, allowed everything: for test code that plays a publisher or a
   * consumer of its own (a durable named after the suite, say), or inspects any stream.
   */
  url: string;
  /** A mesh user's credentialed URL (a deployable's name, or "operator"), with exactly its permissions. */
  urlFor(name: string): string;
  /** SIGKILLs the server; its store stays, as after a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port, store and users. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Not a mesh name, so no deployable can be given its permissions by mistake. */
const SUITE_USER = "suite";
const suiteUser: NatsUser = { name: SUITE_USER, publish: [">"], subscribe: [">"] };

/**
 * A nats-server of the suite's own, on a free port with its own store, so a suite can
 * kill it, and its streams and durable consumers are not shared with other suites. It
 * admits the mesh's users as `npm start` configures them, and the suite's user.
 *
 * The passwords start with "-" and hold "1e5": unquoted, nats-server would fail to parse
 * such a value, so a quoting slip fails every suite rather than one start in fifty.
 */
export async function startTestNats(): Promise<TestNats> {
  const port = await freePort();
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-nats-"));
  const users = [...meshNatsUsers(meshDeployables), suiteUser];
  const passwords = Object.fromEntries(users.map((user) => [user.name, `-1e5-${user.name}-test`]));
  const start = () => startLocalNats({ port, storeDir: join(scratch, "store"), users, passwords });
  let server: LocalNats | undefined = await start();
  const urlFor = server.urlFor;
  return {
    url: urlFor(SUITE_USER),
    urlFor,
    async kill() {
      server?.process.kill("SIGKILL");
      await server?.stop();
      server = undefined;
    },
    async restart() {
      server = await start();
    },
    async stop() {
      await server?.stop();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
