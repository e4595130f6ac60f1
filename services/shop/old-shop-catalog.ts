import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { create, type DescMessage, type DescMethodUnary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createContextValues, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { runUnaryCall } from "@connectrpc/connect/protocol";
import {
  CatalogService,
  ListProductsResponseSchema,
  ProductSchema,
  UpdateProductResponseSchema,
  type ListProductsRequest,
  type ListProductsResponse,
  type Product,
  type UpdateProductRequest,
  type UpdateProductResponse,
} from "#gen/shop/catalog/v1/catalog_service_pb.js";
import type { PeerTls } from "#platform";
import type { ServiceClient } from "#platform/rpc-client/clients.js";
import { createResilience, type ResiliencePolicy } from "#platform/rpc-client/resilience.js";
import { createClientTracingInterceptor } from "#platform/process/telemetry.js";
import { expectIdentity } from "#platform/trust/mesh-tls.js";
import { decimalOf, minorUnitsOf } from "#platform/domain/decimal-price.js";
import { toMoney } from "./money.js";

export interface OldShopCatalogOptions {
  /** The old shop's address, e.g. https://127.0.0.1:50060 (http:// under MESH_TLS=off). */
  baseUrl: string;
  /** The caller's mesh certificate, and the old shop's identity to expect; unset under MESH_TLS=off. */
  tls?: PeerTls;
  resilience?: Partial<ResiliencePolicy>;
  /** The largest answer read; a larger one is refused. 1 MiB by default. */
  maxResponseBytes?: number;
  /** Keep-alive connections to the old shop. */
  maxSockets?: number;
}

const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
/**
 * An idle keep-alive socket is closed after this, before the old shop's keepAliveTimeout (5 s)
 * would close it under a request just sent; that race, should it happen, is a retried UNAVAILABLE.
 */
const IDLE_SOCKET_MS = 4_000;

/** A malformed legacy answer: the adapter refuses it whole rather than pass on anything it could not map exactly. */
const malformed = (what: string) => new ConnectError(`the old shop's answer is malformed: ${what}`, Code.Unavailable);

const MAX_SKU = 128;
const CURRENCY = /^[A-Z]{3}$/;

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * The anti-corruption layer's mapping: the old shop's product JSON to the v1 contract,
 * title -> name, blurb -> description, the decimal string price -> Money in minor units.
 * Every field is checked, and the first that is wrong names itself in an UNAVAILABLE:
 * never a guessed name or a wrong price. Only SKUs asked for may come back, once each.
 */
function mapLegacyProducts(body: unknown, asked: readonly string[]): Product[] {
  if (!isRecord(body) || !Array.isArray(body.products)) throw malformed("products: not a list");
  const wanted = asked.length > 0 ? new Set(asked) : undefined;
  const seen = new Set<string>();
  const products = body.products.map((item: unknown, i): Product => {
    const at = `products[${i}]`;
    const product = mapLegacyProduct(item, at);
    if (wanted && !wanted.has(product.sku)) throw malformed(`${at}.sku: ${JSON.stringify(product.sku)} was not asked for`);
    if (seen.has(product.sku)) throw malformed(`${at}.sku: ${JSON.stringify(product.sku)} listed twice`);
    seen.add(product.sku);
    return product;
  });
  return products.sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
}

/** One legacy product JSON (`at` names it in an error) to the v1 Product, every field checked. */
function mapLegacyProduct(item: unknown, at: string): Product {
  if (!isRecord(item)) throw malformed(`${at}: not an object`);
  const { sku, title, blurb, price, currency } = item;
  if (typeof sku !== "string" || sku === "" || sku.length > MAX_SKU) throw malformed(`${at}.sku: not a SKU of 1 to ${MAX_SKU} characters`);
  if (typeof title !== "string" || title === "") throw malformed(`${at}.title: not a non-empty text`);
  if (typeof blurb !== "string") throw malformed(`${at}.blurb: not a text`);
  const minor = typeof price === "string" ? minorUnitsOf(price) : undefined;
  if (minor === undefined) throw malformed(`${at}.price: ${JSON.stringify(price)?.slice(0, 40)} is not a decimal string with at most 2 places`);
  if (typeof currency !== "string" || !CURRENCY.test(currency)) throw malformed(`${at}.currency: not 3 capital letters`);
  return create(ProductSchema, { sku, name: title, description: blurb, price: toMoney(currency, minor) });
}

/**
 * The v1 write as the old shop's PUT body: name -> title, description -> blurb, minor units ->
 * the decimal string. A price the old shop could not hold is refused here, naming the field,
 * rather than sent to be refused there. The old shop checks the rest and names the field itself.
 */
function legacyWriteOf(request: UpdateProductRequest): { title: string; blurb: string; price: string; currency: string } {
  if (request.sku === "" || request.sku.length > MAX_SKU) throw new ConnectError(`sku: required, at most ${MAX_SKU} characters`, Code.InvalidArgument);
  // "/api/products/.." resolves to another path than this SKU's: never sent.
  if (/^\.+$/.test(request.sku)) throw new ConnectError("sku: must not be only dots", Code.InvalidArgument);
  if (!request.price) throw new ConnectError("price: required", Code.InvalidArgument);
  const price = decimalOf(request.price.minorUnits);
  if (price === undefined) throw new ConnectError("price.minor_units: from 0 to below 10^12", Code.InvalidArgument);
  return { title: request.name, blurb: request.description, price, currency: request.price.currencyCode };
}

/** The old shop's refusal, as the status a v1 caller expects. */
function statusError(status: number, body: unknown): ConnectError {
  const said = isRecord(body) && typeof body.error === "string" ? body.error.slice(0, 200) : `HTTP ${status}`;
  const field = isRecord(body) && typeof body.field === "string" ? `${body.field.slice(0, 50)}: ` : "";
  if (status === 400) return new ConnectError(`${field}${said} (the old shop)`, Code.InvalidArgument);
  if (status === 404) return new ConnectError(`${said} (the old shop)`, Code.NotFound);
  if (status === 401 || status === 403) return new ConnectError(`the old shop refused this caller: ${said}`, Code.PermissionDenied);
  return new ConnectError(`the old shop answered HTTP ${status}: ${said}`, Code.Unavailable);
}

/** The adapter: a CatalogService client of the old shop, plus its write by product. */
export interface OldShopCatalog extends ServiceClient<typeof CatalogService> {
  /**
   * PUT /api/products/:sku (upsert) through UpdateProduct: the product as the old shop stored it.
   * The old shop's 400 is INVALID_ARGUMENT naming its field (permanent); its 5xx, or no answer,
   * UNAVAILABLE after the resilience stack's retries (a PUT of whole values is idempotent).
   */
  putProduct(product: Product, signal?: AbortSignal): Promise<Product>;
}

/**
 * An HTTP/1.1 client of the old shop's JSON API in the shape of a CatalogService client,
 * so the route table's two sides look alike to their callers: GET /api/products?sku=…,
 * mapped by mapLegacyProducts, and UpdateProduct as PUT /api/products/:sku. Calls go through the kit's resilience stack (timeouts, retry
 * of this read, breaker, bulkhead) like any peer's. Keep-alive sockets, each presenting the
 * caller's mesh certificate current when it opened and accepting only the old shop's; the
 * answer is read up to maxResponseBytes. GetSyncStatus is the new side's alone: UNIMPLEMENTED.
 */
export function createOldShopCatalog(options: OldShopCatalogOptions): OldShopCatalog {
  const base = new URL(options.baseUrl);
  const scheme = options.tls ? "https:" : "http:";
  if (base.protocol !== scheme) throw new Error(`oldshop: ${options.baseUrl} must be a ${scheme}// address${options.tls ? " under mTLS" : ""}`);
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 32, maxFreeSockets: 8, timeout: IDLE_SOCKET_MS };
  const agent = options.tls ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
  const send = options.tls ? httpsRequest : httpRequest;
  const tls = options.tls;
  const resilience = createResilience("oldshop", options.resilience);
  // A span per attempt, inside the resilience stack, as the kit's peers have; its traceparent goes to the old shop.
  const interceptors = [resilience.interceptor, createClientTracingInterceptor()];

  /** `method` `path` with an optional JSON body: the parsed JSON of a 2xx answer, else the status's error. */
  function exchangeJson(method: "GET" | "PUT", path: string, body: unknown, signal: AbortSignal, header: Headers): Promise<unknown> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const traceparent = header.get("traceparent");
      const req = send(new URL(path, base), {
        agent,
        method,
        signal,
        headers: {
          accept: "application/json",
          ...(payload !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {}),
          ...(traceparent ? { traceparent } : {}),
        },
        // Read at each new socket, so a rotated certificate is presented from the next connection on.
        ...(tls ? { secureContext: tls.credentials.context(), checkServerIdentity: expectIdentity(tls.peer) } : {}),
      });
      req.on("error", (err) => reject(signal.aborted ? new ConnectError("the call to the old shop was cancelled", Code.Canceled) : new ConnectError(`the old shop is unreachable: ${err.message}`, Code.Unavailable, undefined, undefined, err)));
      req.on("response", (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxResponseBytes) {
            reject(malformed(`larger than ${maxResponseBytes} bytes`));
            res.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", (err) => reject(new ConnectError(`the old shop's answer broke off: ${err.message}`, Code.Unavailable)));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
          } catch {
            body = undefined;
          }
          if (status < 200 || status > 299) reject(statusError(status, body));
          else if (body === undefined) reject(malformed("not JSON"));
          else resolve(body);
        });
      });
      req.end(payload);
    });
  }

  async function listProducts(request: ListProductsRequest, signal: AbortSignal, header: Headers): Promise<ListProductsResponse> {
    const query = new URLSearchParams(request.skus.map((sku) => ["sku", sku]));
    const body = await exchangeJson("GET", `/api/products${request.skus.length > 0 ? `?${query}` : ""}`, undefined, signal, header);
    return create(ListProductsResponseSchema, { products: mapLegacyProducts(body, request.skus) });
  }

  async function updateProduct(request: UpdateProductRequest, signal: AbortSignal, header: Headers): Promise<UpdateProductResponse> {
    const body = await exchangeJson("PUT", `/api/products/${encodeURIComponent(request.sku)}`, legacyWriteOf(request), signal, header);
    const product = mapLegacyProduct(body, "product");
    if (product.sku !== request.sku) throw malformed(`product.sku: ${JSON.stringify(product.sku)} is not the SKU written`);
    return create(UpdateProductResponseSchema, { product });
  }

  /** The methods the old shop can answer, each as its HTTP exchange. */
  const handlers = new Map<unknown, { requestMethod: "GET" | "PUT"; call: (message: never, signal: AbortSignal, header: Headers) => Promise<object> }>([
    [CatalogService.method.listProducts, { requestMethod: "GET", call: listProducts }],
    [CatalogService.method.updateProduct, { requestMethod: "PUT", call: updateProduct }],
  ]);

  const transport: Transport = {
    async unary<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, signal: AbortSignal | undefined, timeoutMs: number | undefined, header: HeadersInit | undefined, input: MessageInitShape<I>, contextValues = createContextValues()) {
      const handler = handlers.get(method);
      return runUnaryCall<I, O>({
        req: { stream: false, service: CatalogService, method, requestMethod: handler?.requestMethod ?? "GET", url: new URL(`/api/products`, base).href, header: new Headers(header), contextValues, message: input },
        ...(signal ? { signal } : {}),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        interceptors,
        next: async (req): Promise<UnaryResponse<I, O>> => {
          if (!handler) throw new ConnectError(`the old shop has no ${method.name}`, Code.Unimplemented);
          const message = await handler.call(req.message as never, req.signal, req.header);
          return { stream: false, service: CatalogService, method, header: new Headers(), trailer: new Headers(), message: message as unknown as UnaryResponse<I, O>["message"] };
        },
      });
    },
    stream() {
      return Promise.reject(new ConnectError("the old shop serves no streams", Code.Unimplemented));
    },
  };

  const client = createClient(CatalogService, transport);
  return {
    client,
    async putProduct(product, signal) {
      const { product: stored } = await client.updateProduct({ sku: product.sku, name: product.name, description: product.description, ...(product.price ? { price: product.price } : {}) }, signal ? { signal } : {});
      return stored!;
    },
    stats: resilience.stats,
    close: () => agent.destroy(),
  };
}
