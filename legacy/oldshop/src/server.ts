import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import postgres from "postgres";
import { pino, type Logger } from "pino";
import { callerOf } from "./callers.js";
import { NotJson, readJson, sendJson, TooLarge } from "./http-json.js";
import { createProducts, type Products } from "./products.js";
import { prepareSchema } from "./schema.js";
import { BadRequest, validProductChange, validSku, validSkuFilter } from "./validation.js";

export interface OldShopTlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface OldShopOptions {
  /** Its own role's URL on its own cluster. */
  databaseUrl: string;
  host?: string;
  /** The API port (0: a free one). */
  port: number;
  /** The plaintext port of GET /healthz (0: a free one). */
  opsPort: number;
  /** Its certificate, key and the CA its callers' certificates must come from; none: plain HTTP behind a sidecar. */
  tls?: OldShopTlsFiles;
  /** Without `tls`: the sidecar addresses whose x-forwarded-client-cert names the caller. */
  trustedProxies?: readonly string[];
  /** URI SANs that may read (GET); writers may too. */
  readers: readonly string[];
  /** URI SANs that may PUT and DELETE. */
  writers: readonly string[];
  logger?: Logger;
  /** How often the certificate files are read again, so a re-issued certificate is served. */
  tlsReloadMs?: number;
}

export interface OldShop {
  url: string;
  opsUrl: string;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 16 * 1024;
const PRODUCT_PATH = /^\/api\/products\/([^/]+)$/;

/** What every connection a caller holds is bounded by. */
const serverLimits = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
  maxHeadersCount: 64,
  maxHeaderSize: 16 * 1024,
  maxConnections: 256,
};

function applyLimits(server: Server): Server {
  server.headersTimeout = serverLimits.headersTimeout;
  server.requestTimeout = serverLimits.requestTimeout;
  server.keepAliveTimeout = serverLimits.keepAliveTimeout;
  server.maxHeadersCount = serverLimits.maxHeadersCount;
  server.maxConnections = serverLimits.maxConnections;
  return server;
}

const readTls = (files: OldShopTlsFiles) => ({ cert: readFileSync(files.certFile), key: readFileSync(files.keyFile), ca: readFileSync(files.caFile) });

async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((ready, fail) => {
    server.once("error", fail);
    server.listen(port, host, () => {
      server.off("error", fail);
      ready();
    });
  });
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((done) => server.close(() => done()));
  server.closeIdleConnections();
  await closed;
}

/** Whether the database answers, within a second. */
async function databaseAnswers(sql: postgres.Sql): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((done) => (timer = setTimeout(() => done(false), 1_000)));
  const probe = sql`select 1`.then(() => true, () => false);
  const answered = await Promise.race([probe, timeout]);
  clearTimeout(timer);
  return answered;
}

/**
 * A 401 or 403, with the connection closed after it: a refused caller holds none of the
 * maxConnections sockets, which it could otherwise keep alive until they are all taken.
 */
function refuse(res: ServerResponse, status: 401 | 403, error: string): void {
  res.setHeader("connection", "close");
  sendJson(res, status, { error });
}

function handleApi(products: Products, req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams, canWrite: boolean): Promise<void> | void {
  if (path === "/api/products") {
    if (req.method !== "GET") return sendJson(res, 405, { error: "method not allowed" });
    return products.list(validSkuFilter(query.getAll("sku"))).then((list) => sendJson(res, 200, { products: list }));
  }
  const match = PRODUCT_PATH.exec(path);
  if (!match) return sendJson(res, 404, { error: "not found" });
  let raw: string;
  try {
    raw = decodeURIComponent(match[1]!);
  } catch {
    throw new BadRequest("the sku in the path is not valid percent-encoding", "sku");
  }
  const sku = validSku(raw);
  switch (req.method) {
    case "GET":
      return products.get(sku).then((product) => (product ? sendJson(res, 200, product) : sendJson(res, 404, { error: "not found" })));
    case "PUT":
      if (!canWrite) return refuse(res, 403, "this caller may not write");
      return readJson(req, MAX_BODY_BYTES).then(async (body) => sendJson(res, 200, await products.put(sku, validProductChange(body))));
    case "DELETE":
      if (!canWrite) return refuse(res, 403, "this caller may not write");
      return products.remove(sku).then((deleted) => (deleted ? sendJson(res, 204) : sendJson(res, 404, { error: "not found" })));
    default:
      return sendJson(res, 405, { error: "method not allowed" });
  }
}

/**
 * The old shop: a monolith of the kind teams migrate from, on purpose. JSON over HTTP/1.1
 * (HTTPS with client certificates in the mesh), decimal-string prices, its own table in its
 * own schema on its own Postgres cluster, no code shared with the mesh.
 */
export async function startOldShop(options: OldShopOptions): Promise<OldShop> {
  const host = options.host ?? "127.0.0.1";
  const logger = options.logger ?? pino({ name: "oldshop" });
  const readers = new Set([...options.readers, ...options.writers]);
  const writers = new Set(options.writers);
  const trustedProxies = new Set(options.trustedProxies ?? []);
  const sql = postgres(options.databaseUrl, { max: 10, idle_timeout: 60, connect_timeout: 5, onnotice: () => {}, connection: { statement_timeout: 5_000, application_name: "oldshop" } });
  const products = createProducts(sql);
  try {
    await prepareSchema(sql);
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }

  const serveApi = (req: IncomingMessage, res: ServerResponse) => {
    const caller = callerOf(req, options.tls !== undefined, trustedProxies);
    if (caller === "none") return refuse(res, 401, "a mesh client certificate is required");
    if (!readers.has(caller.identity)) return refuse(res, 403, `${caller.identity} may not call the old shop`);
    const url = new URL(req.url ?? "/", "http://oldshop");
    const answer = async () => (url.pathname === "/healthz" && req.method === "GET" ? health(res) : handleApi(products, req, res, url.pathname, url.searchParams, writers.has(caller.identity)));
    answer().catch((err: unknown) => {
      if (err instanceof BadRequest) return sendJson(res, 400, { error: err.message, field: err.field });
      if (err instanceof NotJson) return sendJson(res, 400, { error: "the body is not JSON", field: "body" });
      if (err instanceof TooLarge) {
        // The rest of the body is not read: the connection goes with the answer.
        res.setHeader("connection", "close");
        return sendJson(res, 413, { error: `the body exceeds ${MAX_BODY_BYTES} bytes` });
      }
      logger.error({ err, method: req.method, path: url.pathname }, "request failed");
      if (!res.headersSent) sendJson(res, 503, { error: "the old shop cannot answer now" });
    });
  };

  const health = async (res: ServerResponse) =>
    (await databaseAnswers(sql)) ? sendJson(res, 200, { status: "SERVING" }) : sendJson(res, 503, { status: "NOT_SERVING" });

  const tls = options.tls;
  let tlsFiles = tls && readTls(tls);
  const api = applyLimits(
    tls
      ? // Certificates are checked here rather than refused in the handshake, so a caller without one gets a 401 it can read.
        createHttpsServer({ ...tlsFiles, requestCert: true, rejectUnauthorized: false, maxHeaderSize: serverLimits.maxHeaderSize }, serveApi)
      : createHttpServer({ maxHeaderSize: serverLimits.maxHeaderSize }, serveApi),
  );
  const reload =
    tls &&
    setInterval(() => {
      try {
        const fresh = readTls(tls);
        if (fresh.cert.equals(tlsFiles!.cert) && fresh.key.equals(tlsFiles!.key) && fresh.ca.equals(tlsFiles!.ca)) return;
        (api as import("node:https").Server).setSecureContext(fresh);
        tlsFiles = fresh;
        logger.info("serving a re-issued certificate");
      } catch (err) {
        logger.warn({ err }, "could not read the certificate files again; serving the ones loaded before");
      }
    }, options.tlsReloadMs ?? 60_000).unref();
  const ops = applyLimits(
    createHttpServer({ maxHeaderSize: serverLimits.maxHeaderSize }, (req, res) => {
      if (req.method === "GET" && req.url === "/healthz") return void health(res);
      sendJson(res, 404, { error: "not found" });
    }),
  );

  const apiPort = await listen(api, host, options.port);
  const opsPort = await listen(ops, host, options.opsPort);
  logger.info({ port: apiPort, opsPort, tls: tls !== undefined }, "old shop listening");
  return {
    url: `${tls ? "https" : "http"}://${host}:${apiPort}`,
    opsUrl: `http://${host}:${opsPort}`,
    async close() {
      if (reload) clearInterval(reload);
      await Promise.all([closeServer(api), closeServer(ops)]);
      await sql.end({ timeout: 5 });
    },
  };
}
