/**
 * One RPC hop, side by side in one run: a unary echo (InventoryService.GetStock) at a fixed
 * concurrency, for each pairing below, in alternating rounds; medians and ratios.
 *   bare connect        createConnectTransport (binary, HTTP/2) -> connectNodeAdapter on http2
 *   bare over mTLS      the same over TLS with client certificates from the mesh CA (node:http2's secure server,
 *                       the client calling as "order" and checking the server is "inventory"): the transport the
 *                       mesh hop below runs on, with none of our stack, so their ratio is what the stack costs
 *   platform client     createServiceClient (timeout, retry, breaker, bulkhead, tracing) -> bare server
 *   platform both       createServiceClient -> startServer (metrics, tracing, deadlines, guards, health), with metrics as every service has
 *   platform over mTLS  the same, the server a mesh port (mesh: { tls }): mTLS with certificates from a private
 *                       mesh CA, and access control; the client calls as "order", whom GetStock's contract admits,
 *                       and checks the server is "inventory", over one reused session as in the mesh
 *   new connection      a platform client made per call, so each call pays a connection setup, to the plaintext
 *                       and to the mTLS server; bounded by count, not time: what one shared session saves
 *   grpc-js             @grpc/grpc-js client -> @grpc/grpc-js server
 *   moleculer           Moleculer broker -> NATS transporter -> nats-server -> Moleculer broker (bench/moleculer-peer.ts),
 *                       as shipped, and with its timeout, retry, breaker and bulkhead set like ours
 * Every client and server lives in this one process, so each pairing has the same one event
 * loop; Moleculer's nats-server is a second process, and its CPU is counted in its rows.
 * Run: npx tsx bench/rpc-hop.ts [rounds=3] [seconds=3, 1 with BENCH_QUICK=1] [concurrency=64] [connections=300, 100 with BENCH_QUICK=1] [--profile DIR]
 * --profile DIR: a V8 CPU profile of each pairing's last round, DIR/<n>-<pairing>.cpuprofile (open it in Chrome
 * DevTools or speedscope); the profiler's own cost is in that round's figures, so compare figures without it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, createSecureServer } from "node:http2";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { pino } from "pino";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { createServiceClient, meshSessionOptions, type PeerTls } from "#platform/rpc-client/clients.js";
import { startMeshPki } from "#tools/mesh/mesh-pki.js";
import { loadMeshCredentials, type MeshCredentials } from "#platform/trust/mesh-tls.js";
import { createMetrics } from "#platform/process/metrics.js";
import { startServer } from "#platform/rpc-server/server.js";
import { initTelemetry } from "#platform/process/telemetry.js";
import { moleculerFaultTolerance, moleculerTransportNote, startMoleculerPeer } from "./moleculer-peer.js";
import { commandLine, median, progress, quick, targetLine } from "./report.js";

const args = process.argv.slice(2);
const profileFlag = args.indexOf("--profile");
const profileDir = profileFlag < 0 ? undefined : args.splice(profileFlag, 2)[1];
if (profileFlag >= 0 && !profileDir) throw new Error("--profile needs a directory");
const [rounds = 3, seconds = quick ? 1 : 3, concurrency = 64, connections = quick ? 100 : 300] = args.map(Number);
const echo = (router: ConnectRouter) => router.service(InventoryService, { getStock: (req) => ({ stock: { sku: req.sku, available: 1 } }) });

async function bareServer() {
  const server = createServer(connectNodeAdapter({ routes: echo }));
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((done) => server.close(() => done())) };
}

/** connectNodeAdapter on node:http2's TLS server, which insists on a client certificate from the mesh CA. */
async function bareMtlsServer(credentials: MeshCredentials) {
  const server = createSecureServer({ ...credentials.pem(), requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" }, connectNodeAdapter({ routes: echo }));
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((done) => server.close(() => done())) };
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
  /** Measure this many calls rather than run for `seconds`: a connection per call is too slow to fill them. */
  calls?: number;
}

interface Sample {
  callsPerSecond: number;
  cpuMicrosPerCall: number;
}

/**
 * Calls per second with `concurrency` calls always in flight, for `seconds` (or until
 * `pairing.calls` have started), and the CPU each call cost; the rate is over the time the
 * calls actually took, including those still in flight at the deadline.
 */
async function measure(pairing: Pairing): Promise<Sample> {
  // Enough to warm the JIT; a pairing bounded by count pays a handshake per call, so fewer.
  for (let i = 0; i < (pairing.calls ? 20 : 200); i++) await pairing.call();
  let started = 0;
  let done = 0;
  const cpuBefore = process.cpuUsage();
  const outsideBefore = pairing.outsideCpuMs?.() ?? 0;
  const begin = performance.now();
  const until = begin + seconds * 1000;
  const more = pairing.calls === undefined ? () => performance.now() < until : () => started < pairing.calls!;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (more()) {
        started++;
        await pairing.call();
        done++;
      }
    }),
  );
  const elapsedSeconds = (performance.now() - begin) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const outsideMicros = ((pairing.outsideCpuMs?.() ?? 0) - outsideBefore) * 1000;
  return { callsPerSecond: done / elapsedSeconds, cpuMicrosPerCall: (cpu.user + cpu.system + outsideMicros) / done };
}

/** One call over a connection of its own: a platform client made for it, closed after it. */
async function callOnNewConnection(baseUrl: string, tls?: PeerTls) {
  const once = createServiceClient(InventoryService, { baseUrl, ...(tls ? { tls } : {}) });
  try {
    return await once.client.getStock({ sku: "x" });
  } finally {
    once.close();
  }
}

const logger = pino({ level: "silent" });
// As every service does (services/platform/process/lifecycle.ts), so our tracing interceptors record
// real spans and their cost is counted; without an OTLP endpoint they are not exported.
await initTelemetry({ serviceName: "bench" });
const bare = await bareServer();
const serverOptions = { logger, services: [InventoryService], routes: echo, maxRequestBytes: 1 << 20, shutdownGraceMs: 500 };
// Each counted by the metrics interceptor, as every service's port is (services/platform/service.ts).
const platformServer = await startServer({ ...serverOptions, metrics: createMetrics("inventory") }, { host: "127.0.0.1", port: 0 });
// The mesh's own PKI (P-256 certificates naming spiffe://meshwork/<name>), in a directory of this run's.
const pkiDir = mkdtempSync(join(tmpdir(), "meshwork-bench-pki-"));
const pki = await startMeshPki(pkiDir, { lifetimeMs: 60 * 60_000 });
const inventoryCredentials = loadMeshCredentials(pki.files("inventory"), { logger });
const orderCredentials = loadMeshCredentials(pki.files("order"), { logger });
const mtlsServer = await startServer({ ...serverOptions, metrics: createMetrics("inventory"), mesh: { tls: inventoryCredentials } }, { host: "127.0.0.1", port: 0 });
const asOrder: PeerTls = { credentials: orderCredentials, peer: "inventory" };
const bareMtls = await bareMtlsServer(inventoryCredentials);
const bareSessions = new Http2SessionManager(bare.url);
const bareClient = createClient(InventoryService, createConnectTransport({ baseUrl: bare.url, httpVersion: "2", useBinaryFormat: true, sessionManager: bareSessions }));
// The TLS options our client uses (its certificate, the server's identity checked), and nothing else of it.
const bareMtlsSessions = new Http2SessionManager(bareMtls.url, undefined, meshSessionOptions(asOrder));
const bareMtlsClient = createClient(InventoryService, createConnectTransport({ baseUrl: bareMtls.url, httpVersion: "2", useBinaryFormat: true, sessionManager: bareMtlsSessions }));
const platformToBare = createServiceClient(InventoryService, { baseUrl: bare.url });
const platformToPlatform = createServiceClient(InventoryService, { baseUrl: platformServer.url });
const platformOverMtls = createServiceClient(InventoryService, { baseUrl: mtlsServer.url, tls: asOrder });
const grpcJs = await grpcJsPair();
const moleculer = await startMoleculerPeer();
const moleculerWithFaultTolerance = await startMoleculerPeer(moleculerFaultTolerance);

const connectBinary = "Connect protocol, binary protobuf, HTTP/2 (one session)";
const connectBinaryTls = "as above, over TLS 1.3 with client certificates (one session)";
const pairings: Pairing[] = [
  { name: "bare connect", transport: connectBinary, call: () => bareClient.getStock({ sku: "x" }) },
  { name: "bare connect over mTLS (order → inventory)", transport: connectBinaryTls, call: () => bareMtlsClient.getStock({ sku: "x" }) },
  { name: "platform client (timeout, retry, breaker, bulkhead, tracing) → bare server", transport: connectBinary, call: () => platformToBare.client.getStock({ sku: "x" }) },
  { name: "platform client → platform server (metrics, tracing, deadlines, guards)", transport: connectBinary, call: () => platformToPlatform.client.getStock({ sku: "x" }) },
  { name: "platform client → platform server over mTLS with access control (order → inventory)", transport: connectBinaryTls, call: () => platformOverMtls.client.getStock({ sku: "x" }) },
  { name: `a new platform client and connection per call → platform server (${connections} calls)`, transport: "Connect protocol, binary protobuf, HTTP/2 (a session per call)", call: () => callOnNewConnection(platformServer.url), calls: connections },
  { name: `a new platform client and connection per call → platform server over mTLS (${connections} calls)`, transport: "as above, over TLS 1.3 (a handshake per call)", call: () => callOnNewConnection(mtlsServer.url, asOrder), calls: connections },
  { name: "@grpc/grpc-js → @grpc/grpc-js", transport: "gRPC, protobuf (proto-loader), HTTP/2", call: grpcJs.call },
  { name: "Moleculer broker → Moleculer service, as shipped (no timeout, retry, breaker or bulkhead)", transport: moleculerTransportNote, call: moleculer.call, outsideCpuMs: moleculer.brokerCpuMs },
  { name: "Moleculer with timeout, retry, breaker and bulkhead set like ours", transport: moleculerTransportNote, call: moleculerWithFaultTolerance.call, outsideCpuMs: moleculerWithFaultTolerance.brokerCpuMs },
];
const [bareConnect, bareConnectMtls, platformClient, platformBoth, platformMtls, newConnection, newMtlsConnection, , moleculerAsShipped, moleculerLikeOurs] = pairings as [
  Pairing, Pairing, Pairing, Pairing, Pairing, Pairing, Pairing, Pairing, Pairing, Pairing,
];
const samples = new Map<Pairing, Sample[]>(pairings.map((pairing) => [pairing, []]));
const profiler = profileDir === undefined ? undefined : new Session();
if (profiler) {
  mkdirSync(profileDir!, { recursive: true });
  profiler.connect();
  await profiler.post("Profiler.enable");
}
/** Measures the pairing, under the profiler in the last round of a --profile run. */
async function measureRound(pairing: Pairing, round: number): Promise<Sample> {
  if (!profiler || round < rounds - 1) return measure(pairing);
  await profiler.post("Profiler.start");
  const sample = await measure(pairing);
  const { profile } = await profiler.post("Profiler.stop");
  const index = pairings.indexOf(pairing) + 1;
  const slug = pairing.name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);
  writeFileSync(join(profileDir!, `${index}-${slug}.cpuprofile`), JSON.stringify(profile));
  return sample;
}
for (let round = 0; round < rounds; round++) {
  for (const pairing of pairings) samples.get(pairing)!.push(await measureRound(pairing, round));
  progress(`rpc-hop: round ${round + 1}/${rounds} done`);
}
const rate = (pairing: Pairing) => median(samples.get(pairing)!.map((s) => s.callsPerSecond));
const cpu = (pairing: Pairing) => median(samples.get(pairing)!.map((s) => s.cpuMicrosPerCall));

console.log("## One RPC hop\n");
console.log(
  `\`${commandLine("bench/rpc-hop.ts", [rounds, seconds, concurrency, connections])}\`: unary echo (GetStock), ${concurrency} calls in flight, ${rounds} alternating rounds of ${seconds} s per pairing (${connections} calls for a connection per call), medians. ` +
    "Client and server of every pairing share this one process; CPU per call counts this process, plus nats-server for Moleculer. " +
    "A tracer provider is registered as in every service; with no OTLP endpoint it starts no sampled traces (parent-based, off at the root), as in a service without one: our client starts a non-recording span per call (it has no trace to continue) and sends its ids, and our server continues that unsampled trace without a span of its own. " +
    "Moleculer's calls were checked to cross nats-server: with it killed, they time out. " +
    "The mTLS server is a mesh port as every service serves (startServer with mesh: { tls }), with certificates issued by the mesh's own PKI (startMeshPki); bare connect over mTLS is node:http2's TLS server with the same certificates, demanding the client's. " +
    "Our servers count every call in prom-client metrics, as services do.\n",
);
console.log("| pairing | transport | calls/s (median) | CPU µs/call | vs bare connect | vs Moleculer as shipped |\n|---|---|---|---|---|---|");
for (const pairing of pairings) {
  console.log(`| ${pairing.name} | ${pairing.transport} | ${rate(pairing).toFixed(0)} | ${cpu(pairing).toFixed(0)} | ${(rate(pairing) / rate(bareConnect)).toFixed(2)} | ${(rate(pairing) / rate(moleculerAsShipped)).toFixed(2)} |`);
}
const likeForLike = (rate(platformBoth) / rate(moleculerLikeOurs)).toFixed(2);
/** The ratio of two pairings' calls/s taken within each round, then the median: rounds alternate, so both sides of one ratio saw the same machine. */
const ratioOfRounds = (pairing: Pairing, base: Pairing) => median(samples.get(pairing)!.map((s, i) => s.callsPerSecond / samples.get(base)![i]!.callsPerSecond));
const cpuRange = (pairing: Pairing) => `${Math.min(...samples.get(pairing)!.map((s) => s.cpuMicrosPerCall)).toFixed(0)}–${Math.max(...samples.get(pairing)!.map((s) => s.cpuMicrosPerCall)).toFixed(0)}`;
console.log();
console.log(
  `mTLS with access control against plaintext, platform client → platform server over one session: ${(rate(platformMtls) / rate(platformBoth)).toFixed(2)} × the calls/s, ` +
    `${(cpu(platformMtls) / cpu(platformBoth)).toFixed(2)} × the CPU per call (${cpu(platformMtls).toFixed(0)} against ${cpu(platformBoth).toFixed(0)} µs; rounds ${cpuRange(platformMtls)} and ${cpuRange(platformBoth)} µs).`,
);
console.log();
console.log(
  `A connection per call: ${cpu(newMtlsConnection).toFixed(0)} µs of CPU per call over mTLS (rounds ${cpuRange(newMtlsConnection)}), ${cpu(newConnection).toFixed(0)} µs in plaintext: ` +
    `the TLS handshake with client certificates costs about ${(cpu(newMtlsConnection) - cpu(newConnection)).toFixed(0)} µs of CPU (both ends), and one reused mTLS session saves ${(cpu(newMtlsConnection) - cpu(platformMtls)).toFixed(0)} µs per call.`,
);
console.log();
const stackOverMtls = ratioOfRounds(platformMtls, bareConnectMtls);
console.log(
  `The policy stack over the same mTLS transport: platform client → platform server ${rate(platformMtls).toFixed(0)} calls/s and ${cpu(platformMtls).toFixed(0)} µs of CPU per call, ` +
    `bare connect ${rate(bareConnectMtls).toFixed(0)} calls/s and ${cpu(bareConnectMtls).toFixed(0)} µs; the stack adds ${(cpu(platformMtls) - cpu(bareConnectMtls)).toFixed(0)} µs per call, client and server together ` +
    `(ratio of calls/s within each round: ${samples.get(platformMtls)!.map((s, i) => (s.callsPerSecond / samples.get(bareConnectMtls)![i]!.callsPerSecond).toFixed(2)).join(", ")}).`,
);
console.log();
console.log(targetLine("platform client → platform server over mTLS ≥ 0.90 × bare connect over the same mTLS (the policy stack costs ≤ 10%)", stackOverMtls, 0.9));
console.log();
console.log(`In plaintext, the platform client alone → bare server: ${ratioOfRounds(platformClient, bareConnect).toFixed(2)} × bare connect; the platform at both ends: ${ratioOfRounds(platformBoth, bareConnect).toFixed(2)} ×.`);
console.log();
console.log(`${targetLine("platform client → platform server ahead of Moleculer as shipped (≥ 1.00 ×)", rate(platformBoth) / rate(moleculerAsShipped), 1)}; against Moleculer with fault tolerance like ours, ${likeForLike}`);

bareSessions.abort(); // the HTTP/2 server's close waits for every open session to end
bareMtlsSessions.abort();
platformToBare.close();
platformToPlatform.close();
platformOverMtls.close();
grpcJs.close();
await moleculer.close();
await moleculerWithFaultTolerance.close();
await platformServer.close();
await mtlsServer.close();
inventoryCredentials.close();
orderCredentials.close();
pki.stop();
rmSync(pkiDir, { recursive: true, force: true });
await bare.close();
await bareMtls.close();
profiler?.disconnect();
process.exit(0);
