import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { LocalNats } from "../infra/local-nats.js";
import { startLocalPostgres, type LocalPostgres } from "../infra/local-postgres.js";
import { childEnv, meshOnFreePorts, portEnv } from "./topology.js";
import { type MeshServiceName } from "#mesh";
import { ephemeralMeshSecrets, startMeshNats, withMeshCredentials } from "./mesh-launch.js";
import { DEFAULT_CERT_LIFETIME_MS, startMeshPki } from "./mesh-pki.js";
import { createSupervisor } from "./supervisor.js";
import { freePort } from "../infra/tcp.js";
import { legacyClusterSettings } from "../infra/legacy-database.js";


export interface ScratchMeshOptions {
  /** Extra environment for every service, e.g. PAYMENT_URL pointing at a fault proxy. */
  env?: Record<string, string>;
  /**
   * Extra environment for one service, over `env`: e.g. ADVERTISE_URL, so that the address
   * payment announces for discovery is a fault proxy in front of it rather than its own port.
   */
  serviceEnv?: Partial<Record<MeshServiceName, Record<string, string>>>;
  /** Further Postgres settings, e.g. to load pg_stat_statements for a bench. */
  postgresSettings?: Record<string, string>;
  /** Extra Node.js flags for every service, e.g. to write CPU profiles. */
  nodeArgs?: string[];
  /** Where the services' output goes; by default it is kept in `output`. */
  log?: (line: string) => void;
}

/**
 * The whole mesh as `npm start` runs it, but disposable: its own embedded Postgres and its
 * own nats-server in a scratch directory, every service a real process on a free port under
 * the real supervisor, with the credentials `npm start` gives (certificates, a Postgres role
 * and a NATS user each). The bench and the chaos command use it, so a run can kill anything
 * (services, NATS, Postgres) without touching a developer's `.data/` or the machine's servers.
 */
export async function startScratchMesh(options: ScratchMeshOptions = {}) {
  const scratch = mkdtempSync(join(tmpdir(), "meshwork-scratch-"));
  const pgDir = join(scratch, "postgres");
  const legacyPgDir = join(scratch, "oldshop-postgres");
  const natsDir = join(scratch, "nats");
  const [pgPort, legacyPgPort, natsPort] = [await freePort(), await freePort(), await freePort()];
  const superuserPassword = randomBytes(18).toString("base64url");
  const secrets = ephemeralMeshSecrets();
  const startPostgres = () => startLocalPostgres({ dataDir: pgDir, port: pgPort, superuserPassword, ...(options.postgresSettings ? { settings: options.postgresSettings } : {}) });
  const startNats = () => startMeshNats({ port: natsPort, storeDir: natsDir, secrets });
  let postgres: LocalPostgres | undefined = await startPostgres();
  // The old shop's own cluster, with logical replication for the catalog's change capture.
  // Its slot goes with the scratch directory: nothing to drop at stop.
  const legacyPostgres = await startLocalPostgres({ dataDir: legacyPgDir, port: legacyPgPort, superuserPassword, settings: legacyClusterSettings });
  let nats: LocalNats | undefined = await startNats();
  const pki = await startMeshPki(join(scratch, "pki"), { lifetimeMs: DEFAULT_CERT_LIFETIME_MS });

  const onFreePorts = (await meshOnFreePorts()).map((service) => ({ ...service, env: options.serviceEnv?.[service.name as MeshServiceName] ?? {} }));
  const services = await withMeshCredentials(onFreePorts, { adminDatabaseUrl: postgres.url, legacyAdminDatabaseUrl: legacyPostgres.url, natsUrlFor: nats.urlFor, pki, secrets });
  const output: string[] = [];
  const log = options.log ?? ((line: string) => output.push(line));
  const supervisor = createSupervisor(services, {
    env: childEnv({ ...process.env, ...portEnv(services), LOG_LEVEL: "warn", ...options.env }, services),
    log,
    initialBackoffMs: 100,
    maxBackoffMs: 2_000,
    ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}),
  });
  const startedAt = performance.now();
  supervisor.start();
  const stopInfra = async () => {
    pki.stop();
    await nats?.stop();
    await Promise.all([postgres?.stop(), legacyPostgres.stop()]);
    rmSync(scratch, { recursive: true, force: true });
  };
  try {
    await supervisor.waitUntilServing(120_000);
  } catch (err) {
    await supervisor.stop(5_000);
    await stopInfra();
    throw new Error(`${(err as Error).message}\n${output.slice(-20).join("\n")}`);
  }
  const servingAfterMs = performance.now() - startedAt;
  const service = (name: MeshServiceName) => services.find((s) => s.name === name)!;
  const url = (name: MeshServiceName) => `${name === "gateway" ? "http" : "https"}://127.0.0.1:${service(name).port}`;

  return {
    /** The admin URL, for checks across schemas. */
    databaseUrl: postgres.url,
    /** The old shop's cluster's admin URL (database meshwork), for checks of the legacy data and the capture's slot. */
    legacyDatabaseUrl: legacyPostgres.url,
    /** The operator's NATS URL, for checks of streams. */
    natsUrl: nats.urlFor("operator"),
    pki,
    /** From spawning the services to all of them SERVING (infrastructure already up). */
    servingAfterMs,
    output,
    url,
    /** The plaintext ops port: health and /metrics. */
    opsUrl: (name: MeshServiceName) => `http://127.0.0.1:${service(name).opsPort}`,
    pid: (name: MeshServiceName) => supervisor.pid(name),
    waitUntilServing: (timeoutMs: number) => supervisor.waitUntilServing(timeoutMs),
    /** SIGKILLs a service; the supervisor restarts it, as it would any crash. */
    killService(name: MeshServiceName) {
      const pid = supervisor.pid(name);
      if (pid) process.kill(pid, "SIGKILL");
    },
    /** SIGKILLs nats-server; its store stays, as after a crash. */
    async killNats() {
      nats?.process.kill("SIGKILL");
      await nats?.stop();
      nats = undefined;
    },
    async startNats() {
      nats = await startNats();
    },
    /** A clean Postgres shutdown: every connection is cut, as in a database failover or upgrade. */
    async stopPostgres() {
      await postgres?.stop();
      postgres = undefined;
    },
    async startPostgres() {
      postgres = await startPostgres();
    },
    async stop() {
      await supervisor.stop(10_000);
      await stopInfra();
    },
  };
}

export type ScratchMesh = Awaited<ReturnType<typeof startScratchMesh>>;
