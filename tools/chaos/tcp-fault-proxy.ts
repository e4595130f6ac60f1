import { createServer, connect, type Socket } from "node:net";

/** How the proxy treats traffic right now. */
export type FaultMode =
  | { kind: "pass" }
  /** Every chunk, either way, arrives `delayMs` late (in order): a slow link or a slow dependency. */
  | { kind: "slow"; delayMs: number }
  /** Down for `downMs` (open connections cut, new ones reset), then up for `upMs`, and again. */
  | { kind: "flapping"; downMs: number; upMs: number };

export interface TcpFaultProxy {
  /** Where clients connect: http://127.0.0.1:<port>. */
  readonly url: string;
  /** Where traffic goes; until it is set, connections are reset as if nothing listened. */
  setTarget(port: number): void;
  setMode(mode: FaultMode): void;
  /** Connections accepted and connections cut or reset by a fault, for the report. */
  stats(): { accepted: number; cut: number };
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 that injects real network faults between a client and its
 * dependency: latency on every chunk, or a link that drops and comes back. The client sees
 * what it would see in production (stalled streams, reset and refused connections), so the
 * chaos run needs no fault hooks inside the services.
 */
export async function startTcpFaultProxy(): Promise<TcpFaultProxy> {
  let targetPort: number | undefined;
  let mode: FaultMode = { kind: "pass" };
  let modeSince = Date.now();
  /** Open connections, each as the function that cuts it. */
  const open = new Set<() => void>();
  let accepted = 0;
  let cut = 0;

  const isDown = () => {
    if (targetPort === undefined) return true;
    if (mode.kind !== "flapping") return false;
    return (Date.now() - modeSince) % (mode.downMs + mode.upMs) < mode.downMs;
  };
  const cutAll = () => {
    for (const cutOne of open) cutOne();
  };

  // Flapping cuts what is open at the start of each down period; checked often enough
  // that a period begins within a few milliseconds of its due time.
  const flapTimer = setInterval(() => isDown() && cutAll(), 20);
  flapTimer.unref();

  /** Copies one direction, each chunk held until its due time, in arrival order. */
  const pipe = (from: Socket, to: Socket) => {
    let queue = Promise.resolve();
    from.on("data", (chunk) => {
      const delayMs = mode.kind === "slow" ? mode.delayMs : 0;
      const due = Date.now() + delayMs;
      const write = () => void (to.destroyed || to.write(chunk));
      queue = queue.then(() => (delayMs === 0 ? write() : new Promise<void>((resolve) => setTimeout(() => (write(), resolve()), Math.max(0, due - Date.now())))));
    });
    from.on("end", () => void queue.then(() => to.end()));
  };

  const server = createServer((client) => {
    accepted++;
    if (isDown()) {
      cut++;
      return client.resetAndDestroy();
    }
    const upstream = connect({ host: "127.0.0.1", port: targetPort! });
    const close = () => {
      open.delete(cutOne);
      client.destroy();
      upstream.destroy();
    };
    // A reset (RST), not a polite FIN: what a dropped link or a crashed peer looks like.
    const cutOne = () => {
      cut++;
      open.delete(cutOne);
      for (const socket of [client, upstream]) if (!socket.destroyed) socket.resetAndDestroy();
    };
    open.add(cutOne);
    for (const socket of [client, upstream]) socket.on("error", close).on("close", close);
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (typeof address !== "object" || !address) throw new Error("the fault proxy has no address");

  return {
    url: `http://127.0.0.1:${address.port}`,
    setTarget(port) {
      targetPort = port;
    },
    setMode(next) {
      mode = next;
      modeSince = Date.now();
      if (isDown()) cutAll();
    },
    stats: () => ({ accepted, cut }),
    async close() {
      clearInterval(flapTimer);
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
