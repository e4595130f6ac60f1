import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { ConnectError } from "@connectrpc/connect";
import { createHealthProbe, type HealthProbe } from "#platform/rpc-client/health-probe.js";
import type { MeshService } from "./topology.js";
import { legacyDeployables } from "./mesh-databases.js";
import { repoRoot } from "./local-infra.js";
import { assertBuilt, launchArgs, meshRuntime, type MeshRuntime } from "./runtime.js";

export interface SupervisorOptions {
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  /** First restart delay; doubles per crash up to maxBackoffMs, resets after a stable run. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Extra Node.js flags for every child, e.g. `--cpu-prof` (which NODE_OPTIONS refuses). */
  nodeArgs?: string[];
  /** Sources under tsx, or the compiled bundles; by default as `env` says (NODE_ENV=production: compiled). */
  runtime?: MeshRuntime;
}

/**
 * Runs each service as a child process and keeps it running, as an orchestrator would:
 * a child that exits is restarted after an exponential backoff, and each restart is logged.
 * Children get their own process group (Ctrl-C reaches only the supervisor, which stops
 * them in order) and an IPC channel whose loss tells them to stop if the supervisor dies.
 */
export function createSupervisor(services: MeshService[], options: SupervisorOptions) {
  const initialBackoffMs = options.initialBackoffMs ?? 500;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  const runtime = options.runtime ?? meshRuntime(options.env);
  const children = new Map<string, ChildProcess>();
  let stopping = false;

  function launch(service: MeshService, backoffMs: number): void {
    const startedAt = Date.now();
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...launchArgs(service, runtime)], {
      cwd: repoRoot,
      env: { ...options.env, ...service.env },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      detached: true,
    });
    children.set(service.name, child);
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream }).on("line", (line) => options.log(`[${service.name}] ${line}`));
    }
    child.once("exit", (code, signal) => {
      if (stopping) return;
      const stable = Date.now() - startedAt > 60_000;
      const delay = stable ? initialBackoffMs : backoffMs;
      options.log(`supervisor: ${service.name} exited (${signal ?? `code ${code}`}); restarting in ${delay} ms`);
      setTimeout(() => !stopping && launch(service, Math.min(delay * 2, maxBackoffMs)), delay);
    });
  }

  const probes = new Map(services.map((service) => [service, healthProbeOf(service.name, `http://127.0.0.1:${service.opsPort}`)]));

  async function status(service: MeshService): Promise<string> {
    try {
      return await probes.get(service)!.check();
    } catch (err) {
      return err instanceof ConnectError ? `DOWN (${err.rawMessage.slice(0, 40)})` : "DOWN";
    }
  }

  return {
    start(): void {
      assertBuilt(runtime);
      for (const service of services) launch(service, initialBackoffMs);
    },

    /** Resolves once every service reports SERVING; throws after `timeoutMs`. */
    async waitUntilServing(timeoutMs: number): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      for (const service of services) {
        while ((await status(service)) !== "SERVING") {
          if (Date.now() > deadline) throw new Error(`${service.name} did not report SERVING within ${timeoutMs} ms`);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    },

    status,

    /** The running child's pid, for tests that kill it the hard way. */
    pid: (name: string): number | undefined => children.get(name)?.pid,

    /** SIGTERM in reverse start order, so callers stop before what they call. */
    async stop(graceMs: number): Promise<void> {
      stopping = true;
      for (const service of [...services].reverse()) {
        const child = children.get(service.name);
        if (!child || child.exitCode !== null || child.signalCode !== null) continue;
        const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      for (const probe of probes.values()) probe.close();
    },
  };
}

/** Whether `name` is a legacy deployable, which answers GET /healthz rather than grpc.health.v1. */
export const isLegacy = (name: string) => legacyDeployables.some((d) => d.name === name);

/**
 * How a service's health is asked on its ops port: grpc.health.v1, or for a legacy
 * deployable (the old shop, no gRPC), GET /healthz answering {"status":"SERVING"}.
 */
export function healthProbeOf(name: string, base: string): HealthProbe {
  if (!isLegacy(name)) return createHealthProbe(base);
  return {
    async check() {
      const response = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1_000) });
      const { status } = (await response.json()) as { status?: unknown };
      return typeof status === "string" ? status : "UNKNOWN";
    },
    close() {},
  };
}
