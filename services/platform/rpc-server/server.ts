import { randomBytes } from "node:crypto";
import { createServer as createHttp1Server, type ServerResponse } from "node:http";
import { createServer as createHttp2Server } from "node:http2";
import { setMaxListeners } from "node:events";
import type { Socket, AddressInfo } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { context, trace, TraceFlags } from "@opentelemetry/api";
import type { DescService } from "@bufbuild/protobuf";
import { createDualProtocolListener } from "./dual-protocol-listener.js";
import { createClientAddressInterceptor, createTrustedProxies } from "./client-address.js";
import { checkIntervalMs, defaultConnectionLimits, type ConnectionLimits } from "./connection-limits.js";
import { trackHttp2Sessions } from "./http2-sessions.js";
import { createErrorMappingInterceptor } from "./errors.js";
import { createHealthRegistry, ServingStatus, type HealthRegistry } from "./health.js";
import { createDeadlineInterceptor } from "../rpc-client/deadline.js";
import { withCors, type CorsOptions } from "./cors.js";
import { createNodeHandler, type NodeRequest, type NodeResponse } from "./node-handler.js";
import { createReflectionRoutes } from "./reflection.js";
import type { Metrics } from "../process/metrics.js";
import { createServerTracingInterceptor } from "../process/telemetry.js";
import { Health } from "#gen/grpc/health/v1/health_pb.js";
import { createStringGuardInterceptor } from "./string-guard.js";
import { createAccessControlInterceptor } from "../trust/access-control.js";
import { createAdmission, type Admission, type AdmissionOptions } from "./admission.js";
import { identityOfCertificate, identityOfForwardedCert } from "../trust/mesh-identity.js";
import type { MeshCredentials } from "../trust/mesh-tls.js";
import type { Logger } from "../process/logger.js";

export interface ServerOptions {
  logger: Logger;
  /** Registers the service's handlers; health is added by the server. */
  routes: (router: ConnectRouter) => void;
  /** Services reported SERVING by grpc.health.v1 once listening. */
  services: readonly DescService[];
  /** Larger request messages get RESOURCE_EXHAUSTED before any handler runs. */
  maxRequestBytes: number;
  /** How long close() lets in-flight calls finish before dropping connections. */
  shutdownGraceMs: number;
  /** Caps the deadline a call passes on downstream; longer or absent deadlines get this. */
  maxTimeoutMs?: number;
  /** Serves what is not an RPC, e.g. a web page. */
  fallback?: (req: NodeRequest, res: NodeResponse) => void;
  /** Browser origins allowed to call across origins. */
  cors?: CorsOptions;
  /** Counts every RPC. */
  metrics?: Metrics;
  /** Serves GET /metrics; only the ops port does, never a port callers reach. */
  metricsEndpoint?: Metrics;
  /**
   * Makes this a mesh port: every RPC but health needs a verified caller identity that its
   * contract's (meshwork.v1.access) option names. `tls`: mTLS with the mesh's credentials.
   * `forwardedBy`: MESH_TLS=off, where a sidecar proxy at one of these addresses terminates
   * mTLS and passes the client's identity in x-forwarded-client-cert.
   */
  mesh?: { tls: MeshCredentials } | { forwardedBy: readonly string[] };
  /**
   * TLS with the mesh's credentials on a port that is no mesh port (not with `mesh`): the
   * client is asked for a certificate from the mesh CA but need not send one, and a verified
   * one's identity is the call's callerIdentityKey; which calls are admitted is for
   * `interceptors` to say. The gateway's operator listener admits the operator certificate
   * this way, or an operator's bearer token without one.
   */
  tls?: MeshCredentials;
  /**
   * On a mesh port, the one caller that acts for customers (naming the customer in
   * CUSTOMER_HEADER): the public edge, which verifies their tokens. Unset, no caller may.
   */
  customerAgent?: string;
  /** Shares another server's health, as the ops port does the mesh port's; else its own. */
  health?: HealthRegistry;
  /** Serves grpc.reflection (the default); the ops port does not. */
  reflection?: boolean;
  interceptors?: Interceptor[];
  /**
   * A SERVER span per call, continuing the caller's trace (the default). `false`: no call here
   * is traced, nor are the calls it makes (see createUntracedInterceptor); for a port whose
   * callers are not the mesh's traffic, such as the operator console's polling, whose traces
   * would crowd the mesh's own out of a bounded trace store.
   */
  tracing?: boolean;
  /**
   * Adaptive admission control (admission.ts): calls past the server's adaptive concurrency
   * limit, or past its backlog's, get RESOURCE_EXHAUSTED. On by default wherever the server
   * serves a service; `false` turns it off.
   */
  admission?: Omit<AdmissionOptions, "name"> | false;
  /** Timeouts and caps on every connection; unset fields get defaultConnectionLimits. */
  connectionLimits?: Partial<ConnectionLimits>;
  /**
   * Proxy addresses or CIDR subnets whose X-Forwarded-For names the client (for per-address
   * limits), and which are exempt from the per-address connection cap. Empty: the TCP peer
   * is the client, whatever headers it sends.
   */
  trustedProxies?: readonly string[];
}

export interface RunningServer {
  readonly port: number;
  /** Base URL for clients, e.g. https://127.0.0.1:50051 (a mesh port under mTLS). */
  readonly url: string;
  readonly health: HealthRegistry;
  /** Drains: NOT_SERVING, GOAWAY, in-flight calls finish, then connections close. */
  close(): Promise<void>;
}

/**
 * A misspelt field is a client bug, and silently dropping it would hide the bug. Invalid
 * UTF-8 is refused rather than silently turned into U+FFFD: connect-es reads `textDecoder`
 * from these options (createJsonSerialization), though their type does not declare it.
 */
const jsonOptions = { ignoreUnknownFields: false, textDecoder: new TextDecoder("utf-8", { fatal: true }) };

/** A TLS connection's verified client identity, read once at its handshake. */
const connectionIdentity = Symbol("meshwork.connectionIdentity");
type IdentifiedSocket = { [connectionIdentity]?: string | undefined };

/**
 * The TLS side of a mesh port (or of a port with `tls`). It asks every client for a certificate but does not insist
 * at the handshake, so that a caller without one gets UNAUTHENTICATED naming the problem,
 * not a bare handshake failure; the identity of a verified certificate is read once per
 * connection. A rotation takes effect at the next handshake (see startServer).
 */
function createMeshTlsServer(credentials: MeshCredentials, handshakeTimeoutMs: number) {
  const server = createTlsServer({ ...credentials.pem(), requestCert: true, rejectUnauthorized: false, ALPNProtocols: ["h2", "http/1.1"], handshakeTimeout: handshakeTimeoutMs, minVersion: "TLSv1.2" });
  // Registered before the listener's own handler, so the identity is there when a request arrives.
  server.on("secureConnection", (socket: TLSSocket) => {
    (socket as unknown as IdentifiedSocket)[connectionIdentity] = socket.authorized ? identityOfCertificate(socket.getPeerCertificate()) : undefined;
  });
  server.on("tlsClientError", (_err, socket) => socket.destroy());
  return server;
}

/** The identity of the connection's verified client certificate; http2's req.socket is a proxy that forwards property reads to the TLS socket. */
const certificateIdentity = (req: NodeRequest) => (req.socket as unknown as IdentifiedSocket | undefined)?.[connectionIdentity];

/** How a mesh port learns who calls: from the connection's certificate, or from a trusted sidecar. */
function callerIdentityOf(mesh: NonNullable<ServerOptions["mesh"]>): (req: NodeRequest) => string | undefined {
  if ("tls" in mesh) return certificateIdentity;
  const sidecars = createTrustedProxies(mesh.forwardedBy);
  return (req) => {
    if (!sidecars.has(req.socket?.remoteAddress ?? "")) return undefined;
    const header = req.headers["x-forwarded-client-cert"];
    return identityOfForwardedCert(Array.isArray(header) ? header.at(-1) : header);
  };
}

/**
 * Runs each call in a trace of its own marked not sampled, whatever the caller sent: under the
 * tracer's parent-based sampling no span is recorded for it, here or in the services it calls
 * (the traceparent sent on says not sampled), while its log lines still carry a trace id.
 * Leaving the call without any trace instead would make each call it makes the root of a new,
 * recorded trace.
 */
function createUntracedInterceptor(): Interceptor {
  return (next) => (req) => {
    const unsampled = trace.setSpanContext(context.active(), { traceId: randomBytes(16).toString("hex"), spanId: randomBytes(8).toString("hex"), traceFlags: TraceFlags.NONE });
    return context.with(unsampled, () => next(req));
  };
}

/**
 * Serves Connect, gRPC and gRPC-Web on one port, over HTTP/1.1 and cleartext HTTP/2, with
 * grpc.health.v1, request size limits and error mapping on every route.
 */
export async function startServer(options: ServerOptions, listen: { port: number; host: string }): Promise<RunningServer> {
  const { logger } = options;
  if (options.mesh && options.tls) throw new Error("startServer: a mesh port takes its credentials in mesh.tls, not tls");
  const health = options.health ?? createHealthRegistry();
  const shutdown = new AbortController();
  // Every call in flight listens on it until the call ends, so the count follows concurrency;
  // Node's default of 10 would report a leak at the 11th concurrent call.
  setMaxListeners(0, shutdown.signal);
  const limits: ConnectionLimits = { ...defaultConnectionLimits, ...options.connectionLimits };
  const trustedProxies = createTrustedProxies(options.trustedProxies ?? []);
  const maxTimeoutMs = options.maxTimeoutMs ?? 30_000;
  const admission = options.admission === false || options.services.length === 0 ? undefined : createAdmission({ name: options.services[0]!.typeName, ...options.admission });
  if (admission && options.metrics) registerAdmissionMetrics(options.metrics, admission);
  const rpcHandler = createNodeHandler({
    logger,
    routes: (router) => {
      options.routes(router);
      health.routes(router);
      if (options.reflection !== false) createReflectionRoutes([...options.services, Health])(router);
    },
    ...(options.mesh ? { callerIdentity: callerIdentityOf(options.mesh) } : options.tls ? { callerIdentity: certificateIdentity } : {}),
    readMaxBytes: options.maxRequestBytes,
    maxTimeoutMs,
    jsonOptions,
    interceptors: [
      // Outermost: it sees the status code the caller gets.
      ...(options.metrics ? [options.metrics.interceptor] : []),
      options.tracing === false ? createUntracedInterceptor() : createServerTracingInterceptor(options.services[0]?.typeName ?? "unknown"),
      createErrorMappingInterceptor(logger),
      // Before anything reads the request: a caller the contract does not name learns nothing more.
      ...(options.mesh ? [createAccessControlInterceptor({ customerAgent: options.customerAgent })] : []),
      // Early, so a refused call costs little; after access control, which names the operator.
      ...(admission ? [admission.interceptor] : []),
      createDeadlineInterceptor(maxTimeoutMs),
      createStringGuardInterceptor(),
      // Before the service's own interceptors: per-address limits read the resolved client.
      ...(trustedProxies.empty ? [] : [createClientAddressInterceptor(trustedProxies)]),
      ...(options.interceptors ?? []),
    ],
    shutdownSignal: shutdown.signal,
    fallback: (req, res) => {
      if (options.metricsEndpoint?.handle(req, res)) return;
      if (options.fallback) return options.fallback(req, res);
      res.writeHead(404);
      res.end();
    },
  });
  const handler = options.cors ? withCors(rpcHandler, options.cors) : rpcHandler;

  const http1 = createHttp1Server(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      connectionsCheckingInterval: checkIntervalMs([limits.headersTimeoutMs, limits.requestTimeoutMs]),
    },
    handler,
  );
  // Node enforces headersTimeout and requestTimeout by a check of its connections list that
  // it starts on "listening" (setupConnectionsTracking), and only connections that arrive
  // after that are tracked. This server never listens, since the dual-protocol listener hands
  // it sockets, so start the tracking now, as Node's own http2 server with allowHTTP1 does.
  http1.emit("listening");
  const http2 = createHttp2Server({ settings: { maxConcurrentStreams: limits.maxConcurrentStreams } }, handler);
  /** Every accepted connection and when it arrived. */
  const sockets = new Map<Socket, number>();
  const http2Sessions = trackHttp2Sessions(http2, limits);
  http2.on("session", (session) => {
    if (closing) session.close(); // arrived while draining: GOAWAY, after its first streams
  });
  // Requests in flight per HTTP/1.1 socket, so a drain closes idle keep-alive connections
  // at once and lets busy ones finish their response; and when each response began, so
  // none outlives the maximum stream duration (HTTP/1.1 cannot reset one: its connection
  // is closed).
  const http1Busy = new Map<Socket, number>();
  const http1Responses = new Map<ServerResponse, number>();
  const http1Sweep = setInterval(() => {
    const now = Date.now();
    for (const [res, since] of http1Responses) if (now - since >= limits.maxStreamDurationMs) res.socket?.destroy();
  }, checkIntervalMs([limits.maxStreamDurationMs]));
  http1Sweep.unref();
  http1.on("connection", (socket: Socket) => {
    http1Busy.set(socket, 0);
    socket.once("close", () => http1Busy.delete(socket));
  });
  http1.on("request", (req, res) => {
    const socket = req.socket;
    http1Busy.set(socket, (http1Busy.get(socket) ?? 0) + 1);
    http1Responses.set(res, Date.now());
    res.once("close", () => {
      http1Responses.delete(res);
      if (http1Busy.has(socket)) http1Busy.set(socket, (http1Busy.get(socket) ?? 1) - 1);
    });
  });
  const credentials = options.mesh && "tls" in options.mesh ? options.mesh.tls : options.tls;
  const tls = credentials && createMeshTlsServer(credentials, limits.detectTimeoutMs);
  // A new certificate serves the next handshake. A new CA also ends the connections that
  // authenticated under the old one (GOAWAY: their open calls finish), since the identity a
  // connection proved is believed for as long as it lasts.
  let trustedCa = credentials?.pem().ca;
  const stopFollowingRotation = credentials?.onRotate(() => {
    tls?.setSecureContext({ ...credentials.pem(), minVersion: "TLSv1.2" });
    if (credentials.pem().ca === trustedCa) return;
    trustedCa = credentials.pem().ca;
    for (const session of http2Sessions.sessions.keys()) session.close();
    for (const [socket, busy] of http1Busy) if (busy === 0) socket.destroy();
  });
  const listener = createDualProtocolListener(
    http1,
    http2,
    {
      detectTimeoutMs: limits.detectTimeoutMs,
      maxConnections: limits.maxConnections,
      maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
      ...(trustedProxies.empty ? {} : { exempt: (address: string) => trustedProxies.has(address) }),
    },
    tls,
  );
  listener.on("connection", (socket: Socket) => {
    sockets.set(socket, Date.now());
    socket.once("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(listen.port, listen.host, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const port = (listener.address() as AddressInfo).port;
  health.set("", ServingStatus.SERVING);
  for (const service of options.services) health.set(service.typeName, ServingStatus.SERVING);
  logger.info({ port }, "listening");

  /** A connection quiet this long while draining is dropped; shorter ones may be mid-request. */
  const QUIET_MS = 250;
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      health.shutdown();
      stopFollowingRotation?.();
      listener.close();
      for (const session of http2Sessions.sessions.keys()) session.close(); // GOAWAY; open streams run to completion
      const drained = new Promise<void>((resolve) => {
        const check = () => {
          const now = Date.now();
          for (const [socket, busy] of http1Busy) if (busy === 0) socket.destroy();
          for (const [session, { open, idleSince }] of http2Sessions.sessions) if (open === 0 && now - idleSince >= QUIET_MS) session.destroy();
          // Connected but never sent a byte, so neither server has it.
          for (const [socket, since] of sockets) {
            const serving = listener.servingSocket(socket);
            if (!http1Busy.has(serving) && !http2Sessions.sockets.has(serving) && now - since >= QUIET_MS) socket.destroy();
          }
          if (sockets.size === 0) resolve();
          else setTimeout(check, 25).unref();
        };
        check();
      });
      const timedOut = await Promise.race([
        drained.then(() => false),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(true), options.shutdownGraceMs).unref()),
      ]);
      if (timedOut) logger.warn({ open: sockets.size }, "grace period over; dropping connections");
      shutdown.abort();
      for (const socket of sockets.keys()) socket.destroy();
      http2Sessions.stop();
      clearInterval(http1Sweep);
      http1.close(); // stops Node's connection checks; it never listened, so nothing else
      logger.info("server closed");
    })());

  const scheme = credentials ? "https" : "http";
  return { port, url: `${scheme}://${listen.host === "0.0.0.0" ? "127.0.0.1" : listen.host}:${port}`, health, close };
}

/** The admission limits, what they hold now, and the calls they refused. */
function registerAdmissionMetrics(metrics: Metrics, admission: Admission): void {
  metrics.gauge("admission_limit", "Adaptive admission limit: calls in flight (concurrency), and the backlog of work calls leave behind (backlog)", ["kind"], async () => {
    const stats = admission.stats();
    return [{ labels: { kind: "concurrency" }, value: stats.concurrencyLimit }, ...(stats.backlogLimit === undefined ? [] : [{ labels: { kind: "backlog" }, value: stats.backlogLimit }])];
  });
  metrics.gauge("admission_in_use", "What the admission limits hold now: calls in flight, and the backlog", ["kind"], async () => {
    const stats = admission.stats();
    return [{ labels: { kind: "concurrency" }, value: stats.inFlight }, ...(stats.backlog === undefined ? [] : [{ labels: { kind: "backlog" }, value: stats.backlog }])];
  });
  metrics.gauge("admission_shed", "Calls refused with RESOURCE_EXHAUSTED by admission control since start, by the limit they met", ["reason"], async () =>
    Object.entries(admission.stats().shed).map(([reason, value]) => ({ labels: { reason }, value })),
  );
}
