/**
 * One RPC hop, side by side in one run: a unary echo (InventoryService.GetStock) at a fixed
 * concurrency, for each pairing below, in alternating rounds; medians and ratios.
 *   bare connect        createConnectTransport (binary, HTTP/2) -> connectNodeAdapter on http2
 *   platform client     createServiceClient (timeout, retry, breaker, bulkhead, tracing) -> bare server
 *   platform both       createServiceClient -> startServer (metrics, tracing, deadlines, guards, health)
 *   grpc-js             @grpc/grpc-js client -> @grpc/grpc-js server
 *   moleculer           Moleculer broker -> NATS transporter -> nats-server -> Moleculer broker (bench/moleculer-peer.ts),
 *                       as shipped, and with its timeout, retry, breaker and bulkhead set like ours
 * Every client and server lives in this one process, so each pairing has the same one event
 * loop; Moleculer's nats-server is a second process, and its CPU is counted in its rows.
 * Run: npx tsx bench/rpc-hop.ts [rounds=3] [seconds=3, 1 with BENCH_QUICK=1] [concurrency=64]
 */
import { createServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { pino } from "pino";
import { InventoryService } from "../gen/shop/inventory/v1/inventory_service_pb.js";
import { createServiceClient } from "../services/platform/clients.js";
import { startServer } from "../services/platform/server.js";
import { initTelemetry } from "../services/platform/telemetry.js";
import { moleculerFaultTolerance, moleculerTransportNote, startMoleculerPeer } from "./moleculer-peer.js";
import { commandLine, median, progress, quick, targetLine } from "./report.js";

const [rounds = 3, seconds = quick ? 1 : 3, concurrency = 64] = process.argv.slice(2).map(Number);
const echo = (router: ConnectRouter) => router.service(InventoryService, { getStock: (req) => ({ stock: { sku: req.sku, available: 1 } }) });

async function bareServer() {
  const server = createServer(connectNodeAdapter({ routes: echo }));
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((done) => server.close(() => done())) };
}

function grpcJsPair() {
  const definition = protoLoader.loadSync("shop/inventory/v1/inventory_service.proto", { includeDirs: [resolve(import.meta.dirname, "../proto")] });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { shop: { inventory: { v1: { InventoryService: grpc.ServiceClientConstructor } } } };
  const Service = pkg.shop.inventory.v1.InventoryService;
  const server = new grpc.Server();
  server.addService(Service.service, { GetStock: (call: grpc.ServerUnaryCall<{ sku: string }, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, { stock: { sku: call.request.sku, available: 1 } }) });
  return new Promise<{ call: () => Promise<unknown>; close: () => void }>((ready, fail) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) return fail(err);
      const client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as { GetStock: (req: object, cb: (e: unknown, r: unknown) => void) => void; close(): void };
      ready({
        call: () => new Promise((done, reject) => client.GetStock({ sku: "x" }, (e, r) => (e ? reject(e) : done(r)))),
        close: () => {
          client.close();
          server.forceShutdown();
        },
      });
    }),
  );
}

interface Pairing {
  name: string;
  transport: string;
  call: () => Promise<unknown>;
  /** CPU milliseconds spent so far outside this process on this pairing's behalf (a broker). */
  outsideCpuMs?: () => number;
}

interface Sample {
  callsPerSecond: number;
  cpuMicrosPerCall: number;
}

/** Calls per second with `concurrency` calls always in flight, for `seconds`, and the CPU each call cost. */
async function measure(pairing: Pairing): Promise<Sample> {
  for (let i = 0; i < 200; i++) await pairing.call(); // warm up
  let done = 0;
  const cpuBefore = process.cpuUsage();
  const outsideBefore = pairing.outsideCpuMs?.() ?? 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await pairing.call();
        done++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpuBefore);
  const outsideMicros = ((pairing.outsideCpuMs?.() ?? 0) - outsideBefore) * 1000;
  return { callsPerSecond: done / seconds, cpuMicrosPerCall: (cpu.user + cpu.system + outsideMicros) / done };
}

const logger = pino({ level: "silent" });
// As every service does (services/platform/lifecycle.ts), so our tracing interceptors record
// real spans and their cost is counted; without an OTLP endpoint they are not exported.
initTelemetry({ serviceName: "bench" });
const bare = await bareServer();
const platformServer = await startServer({ logger, services: [InventoryService], routes: echo, maxRequestBytes: 1 << 20, shutdownGraceMs: 500 }, { host: "127.0.0.1", port: 0 });
const bareSessions = new Http2SessionManager(bare.url);
const bareClient = createClient(InventoryService, createConnectTransport({ baseUrl: bare.url, httpVersion: "2", useBinaryFormat: true, sessionManager: bareSessions }));
const platformToBare = createServiceClient(InventoryService, { baseUrl: bare.url });
const platformToPlatform = createServiceClient(InventoryService, { baseUrl: platformServer.url });
const grpcJs = await grpcJsPair();
const moleculer = await startMoleculerPeer();
const moleculerWithFaultTolerance = await startMoleculerPeer(moleculerFaultTolerance);

const connectBinary = "Connect protocol, binary protobuf, HTTP/2 (one session)";
const pairings: Pairing[] = [
  { name: "bare connect", transport: connectBinary, call: () => bareClient.getStock({ sku: "x" }) },
  { name: "platform client (timeout, retry, breaker, bulkhead, tracing) → bare server", transport: connectBinary, call: () => platformToBare.client.getStock({ sku: "x" }) },
  { name: "platform client → platform server (metrics, tracing, deadlines, guards)", transport: connectBinary, call: () => platformToPlatform.client.getStock({ sku: "x" }) },
  { name: "@grpc/grpc-js → @grpc/grpc-js", transport: "gRPC, protobuf (proto-loader), HTTP/2", call: grpcJs.call },
  { name: "Moleculer broker → Moleculer service, as shipped (no timeout, retry, breaker or bulkhead)", transport: moleculerTransportNote, call: moleculer.call, outsideCpuMs: moleculer.brokerCpuMs },
  { name: "Moleculer with timeout, retry, breaker and bulkhead set like ours", transport: moleculerTransportNote, call: moleculerWithFaultTolerance.call, outsideCpuMs: moleculerWithFaultTolerance.brokerCpuMs },
];
const [bareConnect, platformClient, platformBoth, , moleculerAsShipped, moleculerLikeOurs] = pairings as [Pairing, Pairing, Pairing, Pairing, Pairing, Pairing];
const samples = new Map<Pairing, Sample[]>(pairings.map((pairing) => [pairing, []]));
for (let round = 0; round < rounds; round++) {
  for (const pairing of pairings) samples.get(pairing)!.push(await measure(pairing));
  progress(`rpc-hop: round ${round + 1}/${rounds} done`);
}
const rate = (pairing: Pairing) => median(samples.get(pairing)!.map((s) => s.callsPerSecond));
const cpu = (pairing: Pairing) => median(samples.get(pairing)!.map((s) => s.cpuMicrosPerCall));

console.log("## One RPC hop\n");
console.log(
  `\`${commandLine("bench/rpc-hop.ts", [rounds, seconds, concurrency])}\`: unary echo (GetStock), ${concurrency} calls in flight, ${rounds} alternating rounds of ${seconds} s per pairing, medians. ` +
    "Client and server of every pairing share this one process; CPU per call counts this process, plus nats-server for Moleculer. " +
    "A tracer provider is registered as in every service; with no OTLP endpoint it starts no sampled traces (parent-based, off at the root), as in a service without one, so our tracing interceptors create and propagate non-recording spans. " +
    "Moleculer's calls were checked to cross nats-server: with it killed, they time out.\n",
);
console.log("| pairing | transport | calls/s (median) | CPU µs/call | vs bare connect | vs Moleculer as shipped |\n|---|---|---|---|---|---|");
for (const pairing of pairings) {
  console.log(`| ${pairing.name} | ${pairing.transport} | ${rate(pairing).toFixed(0)} | ${cpu(pairing).toFixed(0)} | ${(rate(pairing) / rate(bareConnect)).toFixed(2)} | ${(rate(pairing) / rate(moleculerAsShipped)).toFixed(2)} |`);
}
const likeForLike = (rate(platformBoth) / rate(moleculerLikeOurs)).toFixed(2);
console.log();
console.log(targetLine("platform client ≥ 0.90 × bare connect (the policy stack costs ≤ 10%)", rate(platformClient) / rate(bareConnect), 0.9));
console.log();
console.log(`${targetLine("platform client → platform server ahead of Moleculer as shipped (≥ 1.00 ×)", rate(platformBoth) / rate(moleculerAsShipped), 1)}; against Moleculer with fault tolerance like ours, ${likeForLike}`);

bareSessions.abort(); // the HTTP/2 server's close waits for every open session to end
platformToBare.close();
platformToPlatform.close();
grpcJs.close();
await moleculer.close();
await moleculerWithFaultTolerance.close();
await platformServer.close();
await bare.close();
process.exit(0);
