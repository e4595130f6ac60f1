import { createServer, connect, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTcpFaultProxy, type TcpFaultProxy } from "./tcp-fault-proxy.js";

/** One round trip through the proxy: the echoed text and how long it took, or the error. */
function echo(port: number, text: string): Promise<{ reply: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect({ host: "127.0.0.1", port });
    let reply = "";
    socket.setTimeout(2_000, () => socket.destroy(new Error("timed out")));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.length >= text.length) {
        socket.end();
        resolve({ reply, ms: performance.now() - started });
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`closed after "${reply}"`)));
    socket.write(text);
  });
}

describe("the TCP fault proxy", () => {
  let target: Server;
  let proxy: TcpFaultProxy;
  let port: number;

  beforeAll(async () => {
    target = createServer((socket) => socket.on("error", () => {}).pipe(socket));
    await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
    proxy = await startTcpFaultProxy();
    port = Number(new URL(proxy.url).port);
  });
  afterAll(async () => {
    await proxy?.close();
    await new Promise((resolve) => target?.close(resolve));
  });

  it("resets connections until it has a target, then passes traffic through", async () => {
    await expect(echo(port, "early")).rejects.toThrow();
    proxy.setTarget((target.address() as { port: number }).port);
    expect((await echo(port, "hello")).reply).toBe("hello");
  });

  it("delays every chunk when slow", async () => {
    proxy.setMode({ kind: "slow", delayMs: 150 });
    const { reply, ms } = await echo(port, "slow");
    expect(reply).toBe("slow");
    expect(ms).toBeGreaterThanOrEqual(290); // delayed on the way there and on the way back
    proxy.setMode({ kind: "pass" });
  });

  it("when flapping, refuses and cuts connections while down and passes while up", async () => {
    proxy.setMode({ kind: "flapping", downMs: 400, upMs: 400 });
    await expect(echo(port, "down")).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 450));
    expect((await echo(port, "up")).reply).toBe("up");
    // A connection opened while up is cut when the next down period starts.
    const open = connect({ host: "127.0.0.1", port });
    const closed = new Promise<string>((resolve) => open.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error")).on("close", () => resolve("closed")));
    expect(await closed).toMatch(/ECONNRESET|closed/);
    expect(proxy.stats().cut).toBeGreaterThanOrEqual(2);
    proxy.setMode({ kind: "pass" });
  });
});
