import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import { connect as connectHttp2, constants as http2Constants, type ClientHttp2Session } from "node:http2";
import { connect as connectTcp, type Socket } from "node:net";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { clientAddressKey } from "#platform/rpc-server/node-handler.js";
import { startServer, type RunningServer } from "#platform/rpc-server/server.js";
import type { ConnectionLimits } from "#platform/rpc-server/connection-limits.js";
import { fromAddress } from "./from-address.js";

/**
 * Hostile connections against a real server: attack traffic comes from 127.0.0.2 (and .3,
 * .4), while honest calls from 127.0.0.1 must keep succeeding. Timeouts are short here; the
 * defaults are seconds.
 */
const limits: ConnectionLimits = {
  detectTimeoutMs: 300,
  headersTimeoutMs: 400,
  requestTimeoutMs: 800,
  idleTimeoutMs: 600,
  maxConnections: 64,
  maxConnectionsPerAddress: 8,
  maxConcurrentStreams: 100,
  maxStreamDurationMs: 60_000,
};
/** Timers are checked every quarter of a timeout; scheduling on a busy machine adds more. */
const SLACK_MS = 700;
/** Node closes a keep-alive HTTP/1.1 connection one second after the advertised timeout. */
const NODE_KEEP_ALIVE_BUFFER_MS = 1_000;
/** A proxy the server trusts, for the X-Forwarded-For cases. */
const PROXY = "127.0.0.5";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const openFds = () => readdirSync("/proc/self/fd").length;

async function startTarget(overrides: Partial<ConnectionLimits> = {}): Promise<RunningServer> {
  return startServer(
    {
      logger: pino({ level: "silent" }),
      services: [InventoryService, StorefrontService],
      maxRequestBytes: 64 * 1024,
      shutdownGraceMs: 500,
      connectionLimits: { ...limits, ...overrides },
      trustedProxies: [PROXY],
      routes: (router) => {
        router.service(InventoryService, {
          // Answers with the client address the server resolved for the call.
          getStock: (_req, ctx) => ({ stock: { sku: ctx.values.get(clientAddressKey), available: 1 } }),
        });
        router.service(StorefrontService, {
          // A stream far longer than every timeout: its request is complete, so none applies.
          async *watchOrder(_req, ctx) {
            for (let i = 0; i < 8 && !ctx.signal.aborted; i++) {
              await sleep(250);
              yield { eventType: `tick ${i}` };
            }
          },
        });
      },
    },
    { host: "127.0.0.1", port: 0 },
  );
}

/** A connection from `localAddress`, with when and how it ended and what it was sent. */
async function attacker(port: number, localAddress = "127.0.0.2") {
  const socket = connectTcp({ host: "127.0.0.1", port, localAddress });
  const received: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => received.push(chunk));
  socket.on("error", () => {});
  const openedAt = Date.now();
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now() - openedAt)));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("close", () => reject(new Error("closed before connecting")));
  });
  return { socket, closed, received: () => Buffer.concat(received).toString("latin1") };
}

/** Writes `piece` every `everyMs`, a bounded number of times, while the socket is open. */
function dribble(socket: Socket, piece: string, everyMs: number, times = 40) {
  const timer = setInterval(() => {
    if (times-- <= 0 || socket.destroyed) clearInterval(timer);
    else socket.write(piece);
  }, everyMs);
  socket.once("close", () => clearInterval(timer));
}

function http2From(url: string, localAddress: string): ClientHttp2Session {
  const session = connectHttp2(url, fromAddress(localAddress));
  session.on("error", () => {});
  return session;
}

describe("connection limits", () => {
  let server: RunningServer;
  let honest: ReturnType<typeof createClient<typeof InventoryService>>;
  let baselineFds: number;

  beforeAll(async () => {
    server = await startTarget();
    honest = createClient(InventoryService, createGrpcTransport({ baseUrl: server.url }));
    expect((await honest.getStock({ sku: "warm-up" })).stock?.sku).toBe("127.0.0.1");
    baselineFds = openFds();
  });
  afterAll(() => server.close());

  it("closes sockets that never say which protocol they speak, and keeps serving 127.0.0.1", async () => {
    const silent = await Promise.all(Array.from({ length: 6 }, () => attacker(server.port)));
    // "P" could still be the HTTP/2 preface: not enough to classify.
    const undecided = await attacker(server.port);
    undecided.socket.write("PRI * HTTP");
    expect((await honest.getStock({ sku: "during" })).stock?.available).toBe(1);
    const lifetimes = await Promise.all([...silent, undecided].map((a) => a.closed));
    expect(Math.min(...lifetimes)).toBeGreaterThanOrEqual(limits.detectTimeoutMs - 50);
    expect(Math.max(...lifetimes)).toBeLessThan(limits.detectTimeoutMs + SLACK_MS);
  });

  it("answers HTTP/1.1 headers that never end with 408 and closes, within the headers timeout", async () => {
    const slow = await attacker(server.port);
    slow.socket.write("GET /shop.inventory.v1.InventoryService/GetStock HTTP/1.1\r\nHost: x\r\n");
    dribble(slow.socket, "X-Slow: 1\r\n", 50);
    expect((await honest.getStock({ sku: "during" })).stock?.available).toBe(1);
    const lifetime = await slow.closed;
    expect(lifetime).toBeLessThan(limits.headersTimeoutMs + SLACK_MS);
    expect(slow.received()).toMatch(/^HTTP\/1\.1 408/);
  });

  it("closes an HTTP/1.1 request whose body never ends, within the request timeout", async () => {
    const slow = await attacker(server.port);
    slow.socket.write("POST /shop.inventory.v1.InventoryService/GetStock HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{");
    dribble(slow.socket, " ", 50);
    const lifetime = await slow.closed;
    expect(lifetime).toBeGreaterThanOrEqual(limits.requestTimeoutMs - 50);
    expect(lifetime).toBeLessThan(limits.requestTimeoutMs + SLACK_MS);
  });

  it("resets an HTTP/2 stream whose request never ends, within the request timeout", async () => {
    const session = http2From(server.url, "127.0.0.2");
    try {
      const stream = session.request({ ":method": "POST", ":path": "/shop.inventory.v1.InventoryService/GetStock", "content-type": "application/grpc", te: "trailers" });
      stream.on("error", () => {});
      stream.write(Buffer.from([0, 0, 0, 0, 100])); // a frame header promising 100 bytes
      const started = Date.now();
      const rstCode = await new Promise<number>((resolve) => stream.once("close", () => resolve(stream.rstCode ?? -1)));
      expect(rstCode).toBe(http2Constants.NGHTTP2_CANCEL);
      expect(Date.now() - started).toBeLessThan(limits.requestTimeoutMs + SLACK_MS);
    } finally {
      session.destroy();
    }
  });

  it("drops an HTTP/2 client that sends the preface but never its SETTINGS, within the headers timeout", async () => {
    const mute = await attacker(server.port);
    mute.socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    expect(await mute.closed).toBeLessThan(limits.headersTimeoutMs + SLACK_MS);
  });

  it("lets a streaming response run far past the request and idle timeouts, over HTTP/1.1 and HTTP/2", async () => {
    for (const httpVersion of ["1.1", "2"] as const) {
      const client = createClient(StorefrontService, createConnectTransport({ baseUrl: server.url, httpVersion }));
      const started = Date.now();
      const events: string[] = [];
      for await (const update of client.watchOrder({ orderId: "o" })) events.push(update.eventType);
      expect(events).toHaveLength(8);
      expect(Date.now() - started).toBeGreaterThan(limits.requestTimeoutMs + limits.idleTimeoutMs);
    }
  });

  it("ends a stream at the maximum stream duration, over HTTP/1.1 and HTTP/2, however long it would run", async () => {
    const short = await startTarget({ maxStreamDurationMs: 1_000 });
    try {
      for (const httpVersion of ["1.1", "2"] as const) {
        const client = createClient(StorefrontService, createConnectTransport({ baseUrl: short.url, httpVersion }));
        const started = Date.now();
        const events: string[] = [];
        const outcome = await (async () => {
          for await (const update of client.watchOrder({ orderId: "o" })) events.push(update.eventType);
        })().then(
          () => "completed",
          () => "cut",
        );
        expect(outcome, `HTTP/${httpVersion}`).toBe("cut");
        expect(events.length, `HTTP/${httpVersion}`).toBeLessThan(8);
        expect(Date.now() - started, `HTTP/${httpVersion}`).toBeGreaterThanOrEqual(1_000);
        expect(Date.now() - started, `HTTP/${httpVersion}`).toBeLessThan(1_000 + SLACK_MS + 1_000);
      }
    } finally {
      await short.close();
    }
  });

  it("closes an idle HTTP/1.1 keep-alive connection after the idle timeout", async () => {
    const idle = await attacker(server.port);
    idle.socket.write("GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n");
    const lifetime = await idle.closed;
    expect(idle.received()).toMatch(/^HTTP\/1\.1 404/);
    expect(lifetime).toBeGreaterThanOrEqual(limits.idleTimeoutMs);
    expect(lifetime).toBeLessThan(limits.idleTimeoutMs + NODE_KEEP_ALIVE_BUFFER_MS + SLACK_MS);
  });

  it("sends GOAWAY to an HTTP/2 session with no open stream after the idle timeout, and closes it", async () => {
    const session = http2From(server.url, "127.0.0.2");
    const request = session.request({ ":path": "/nothing-here" });
    const status = await new Promise((resolve) => request.once("response", (headers) => resolve(headers[":status"])));
    request.resume();
    expect(status).toBe(404);
    const started = Date.now();
    const goaway = new Promise<number>((resolve) => session.once("goaway", (code) => resolve(code)));
    const closed = new Promise<void>((resolve) => session.once("close", resolve));
    // Pings are not calls: they must not keep an idle session open.
    const pinger = setInterval(() => !session.destroyed && session.ping(() => {}), 100);
    try {
      expect(await goaway).toBe(http2Constants.NGHTTP2_NO_ERROR);
      await closed;
      expect(Date.now() - started).toBeLessThan(limits.idleTimeoutMs + SLACK_MS);
    } finally {
      clearInterval(pinger);
      session.destroy();
    }
  });

  it("refuses connections past the per-address cap while 127.0.0.1 is still served, and frees the slots as they close", async () => {
    // Partial headers hold each connection until the headers timeout.
    const held = await Promise.all(
      Array.from({ length: limits.maxConnectionsPerAddress }, async () => {
        const a = await attacker(server.port);
        a.socket.write("GET / HTTP/1.1\r\n");
        return a;
      }),
    );
    const refused = await attacker(server.port).then(
      (a) => a.closed,
      () => 0,
    );
    expect(refused).toBeLessThan(limits.headersTimeoutMs / 2); // closed at accept, not timed out
    expect(held.every((a) => !a.socket.destroyed)).toBe(true);
    const fresh = createClient(InventoryService, createGrpcTransport({ baseUrl: server.url }));
    expect((await fresh.getStock({ sku: "during" })).stock?.sku).toBe("127.0.0.1");
    await Promise.all(held.map((a) => a.closed));
    // The address's slots are free again.
    const again = await attacker(server.port);
    again.socket.write("GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    await again.closed;
    expect(again.received()).toMatch(/^HTTP\/1\.1 404/);
  });

  it("does not hold trusted proxies to the per-address cap", async () => {
    const viaProxy = await Promise.all(
      Array.from({ length: limits.maxConnectionsPerAddress + 4 }, async () => {
        const a = await attacker(server.port, PROXY);
        a.socket.write("GET / HTTP/1.1\r\n");
        return a;
      }),
    );
    await sleep(50);
    expect(viaProxy.filter((a) => a.socket.destroyed)).toHaveLength(0);
    for (const a of viaProxy) a.socket.destroy();
  });

  it("returns to its baseline of file descriptors after the attacks", async () => {
    // Silent and slow sockets from three addresses: refused past the cap, the rest timed out.
    const attacks = await Promise.allSettled(
      Array.from({ length: 40 }, async (_, i) => {
        const a = await attacker(server.port, `127.0.0.${2 + (i % 3)}`);
        if (i % 2) a.socket.write("GET / HTTP/1.1\r\n");
        return a;
      }),
    );
    const opened = attacks.flatMap((a) => (a.status === "fulfilled" ? [a.value] : []));
    expect(opened.length).toBeGreaterThan(0);
    await Promise.all(opened.map((a) => a.closed));
    await sleep(100);
    expect(openFds()).toBeLessThanOrEqual(baselineFds + 2);
  });

  it("believes X-Forwarded-For only from a trusted proxy, read from the right", async () => {
    const from = (localAddress: string, forwardedFor: string) =>
      createClient(
        InventoryService,
        createConnectTransport({
          baseUrl: server.url,
          httpVersion: "2",
          nodeOptions: fromAddress(localAddress),
          interceptors: [(next) => (req) => (req.header.set("x-forwarded-for", forwardedFor), next(req))],
        }),
      ).getStock({ sku: "who" });
    // Anyone can send the header: from an untrusted peer it is ignored.
    expect((await from("127.0.0.2", "203.0.113.9")).stock?.sku).toBe("127.0.0.2");
    // Through the proxy, the hop it appended is the client; what the client wrote is not read.
    expect((await from(PROXY, "6.6.6.6, 203.0.113.9")).stock?.sku).toBe("203.0.113.9");
    // Trusted hops are skipped.
    expect((await from(PROXY, "203.0.113.9, 127.0.0.5")).stock?.sku).toBe("203.0.113.9");
  });
});

describe("the cap on connections in all", () => {
  it("refuses connections past it at accept, from any address", async () => {
    const server = await startTarget({ maxConnections: 10, maxConnectionsPerAddress: 8 });
    try {
      const held = await Promise.all(Array.from({ length: 10 }, (_, i) => attacker(server.port, i < 8 ? "127.0.0.2" : "127.0.0.3")));
      for (const a of held) a.socket.write("GET / HTTP/1.1\r\n");
      const refused = await attacker(server.port, "127.0.0.4").then(
        (a) => a.closed,
        () => 0,
      );
      expect(refused).toBeLessThan(limits.headersTimeoutMs / 2);
      expect(held.every((a) => !a.socket.destroyed)).toBe(true);
      for (const a of held) a.socket.destroy();
    } finally {
      await server.close();
    }
  });
});
