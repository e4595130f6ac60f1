/**
 * One RPC hop, side by side in one run: a unary echo (InventoryService.GetStock) at a fixed
 * concurrency, for each pairing below, in alternating rounds; medians and ratios.
 *   bare connect        createConnectTransport (binary, HTTP/2) -> connectNodeAdapter on http2
 *   platform client     createServiceClient (timeout, retry, breaker, bulkhead, tracing) -> bare server
 *   platform both       createServiceClient -> startServer (metrics, tracing, deadlines, guards, health)
 *   grpc-js             @grpc/grpc-js client -> @grpc/grpc-js server
 * Run: npx tsx bench/rpc-hop.ts [rounds=3] [seconds=3] [concurrency=64]
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

const [rounds = 3, seconds = 3, concurrency = 64] = process.argv.slice(2).map(Number);
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

/** Calls per second with `concurrency` calls always in flight, for `seconds`. */
async function measure(call: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 200; i++) await call(); // warm up
  let done = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await call();
        done++;
      }
    }),
  );
  return done / seconds;
}

const logger = pino({ level: "silent" });
const bare = await bareServer();
const platformServer = await startServer({ logger, services: [InventoryService], routes: echo, maxRequestBytes: 1 << 20, shutdownGraceMs: 500 }, { host: "127.0.0.1", port: 0 });
const bareClient = createClient(InventoryService, createConnectTransport({ baseUrl: bare.url, httpVersion: "2", useBinaryFormat: true, sessionManager: new Http2SessionManager(bare.url) }));
const platformToBare = createServiceClient(InventoryService, { baseUrl: bare.url });
const platformToPlatform = createServiceClient(InventoryService, { baseUrl: platformServer.url });
const grpcJs = await grpcJsPair();

const pairings: [string, () => Promise<unknown>][] = [
  ["bare connect", () => bareClient.getStock({ sku: "x" })],
  ["platform client", () => platformToBare.client.getStock({ sku: "x" })],
  ["platform both", () => platformToPlatform.client.getStock({ sku: "x" })],
  ["grpc-js", grpcJs.call],
];
const results = new Map<string, number[]>(pairings.map(([name]) => [name, []]));
for (let round = 0; round < rounds; round++) {
  for (const [name, call] of pairings) results.get(name)!.push(await measure(call));
  process.stderr.write(`round ${round + 1}/${rounds} done\n`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const baseline = median(results.get("bare connect")!);
console.log(`unary echo, ${concurrency} in flight, ${rounds} rounds x ${seconds} s, client and server on the same 2 cores`);
console.log("| pairing | calls/s (median) | vs bare connect |\n|---|---|---|");
for (const [name, samples] of results) console.log(`| ${name} | ${median(samples).toFixed(0)} | ${(median(samples) / baseline).toFixed(2)} |`);

platformToBare.close();
platformToPlatform.close();
grpcJs.close();
await platformServer.close();
await bare.close();
process.exit(0);
