import { readFileSync } from "node:fs";
import { connect, createServer } from "node:net";

/** True if something accepts TCP connections at host:port within `timeoutMs`. */
export function isListening(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (result: boolean) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** Polls until host:port accepts connections, or throws after `timeoutMs`. */
export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await isListening(host, port))) {
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Whether a listener could take 127.0.0.1:port just now. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * Where this machine hands out ports for outgoing connections (Linux's ip_local_port_range). A
 * port from there, though free when picked, can become some connection's local end before the
 * service binds it, and stay taken as long as that connection lives (a pool's, for minutes).
 */
function ephemeralPorts(): { low: number; high: number } {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low && high) return { low, high };
  } catch {
    // Not Linux: assume IANA's dynamic range.
  }
  return { low: 49152, high: 65535 };
}

const LOWEST_PICKED = 10_000;

/**
 * A port that was free a moment ago, for a server a test or tool starts: picked at random
 * below the ephemeral range, so no outgoing connection takes it in the meantime.
 */
export async function freePort(): Promise<number> {
  const { low } = ephemeralPorts();
  const span = low - LOWEST_PICKED;
  for (let attempt = 0; span > 0 && attempt < 50; attempt++) {
    const port = LOWEST_PICKED + Math.floor(Math.random() * span);
    if (await canListen(port)) return port;
  }
  return kernelPickedPort(); // no room below the ephemeral range: the kernel's pick, with its race
}

function kernelPickedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
