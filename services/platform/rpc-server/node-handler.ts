import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createConnectRouter, createContextKey, createContextValues, type ConnectRouter, type ConnectRouterOptions, type Interceptor } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { capTimeoutHeaders, MAX_TIMER_MS } from "../rpc-client/deadline.js";
import { mappingErrors } from "./errors.js";
import { callerIdentityKey } from "../trust/mesh-identity.js";
import type { Logger } from "../process/logger.js";

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

/** The TCP peer of the call, available to interceptors through req.contextValues. */
export const clientAddressKey = createContextKey<string>("unknown", { description: "client address" });

/** One of each for every call: they hold no state between calls. */
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * connectNodeAdapter, plus corrections so that a client's mistake never looks like ours and
 * a caller cannot break the server's timers:
 * - A timeout header longer than the cap is capped before connect-es arms its timer (see
 *   capTimeoutHeaders); a timer past 2^31-1 ms would fire at once.
 * - connect-es answers some malformed requests with INTERNAL although the fault is the
 *   client's: a body that is not valid protobuf ("parse binary: ..."), and a gRPC, gRPC-Web
 *   or Connect streaming frame flagged compressed without a message encoding to decompress
 *   it. JSON that fails to parse is already INVALID_ARGUMENT, and connect-go answers all of
 *   them with INVALID_ARGUMENT. A unary call's error is rewritten in each protocol's
 *   framing; a streaming call's is raised while the handler reads its input, so an
 *   interceptor corrects it. (An encoding we do not support is UNIMPLEMENTED, as the gRPC
 *   spec says; connect-es does that.)
 * - A Connect GET whose `message` query parameter is not base64 is refused with
 *   INVALID_ARGUMENT here; connect-es answers it with a bare 500 that logs nothing.
 * - connect-es percent-encodes grpc-message with encodeURIComponent, escaping printable
 *   characters such as ":" that the gRPC spec leaves bare; @grpc/grpc-js then shows
 *   "items%3A must not be empty". We re-encode it as the spec says.
 */
export function createNodeHandler(
  options: Omit<ConnectRouterOptions, "maxTimeoutMs"> & {
    routes: (router: ConnectRouter) => void;
    logger: Logger;
    /**
     * The longest timeout a unary call gets; a caller asking for more gets this. A stream
     * keeps the caller's timeout up to Node's timer ceiling, as a watch may outlive the
     * per-call cap and is bounded by its own limits.
     */
    maxTimeoutMs?: number;
    /** Serves what is not an RPC, e.g. a web page; 404 if absent. */
    fallback?: (req: NodeRequest, res: NodeResponse) => void;
    /** The caller's verified mesh identity, for the access control of a mesh port. */
    callerIdentity?: (req: NodeRequest) => string | undefined;
  },
) {
  const maxUnaryTimeoutMs = Math.min(options.maxTimeoutMs ?? MAX_TIMER_MS, MAX_TIMER_MS);
  const router = createConnectRouter({
    acceptCompression: [compressionGzip, compressionBrotli],
    ...options,
    // Every timeout is capped below this first, so connect's own check (INVALID_ARGUMENT
    // past it) never fires.
    maxTimeoutMs: MAX_TIMER_MS,
    // Innermost, so the other interceptors (error mapping) see the corrected code.
    interceptors: [...(options.interceptors ?? []), streamClientFaultInterceptor],
  });
  options.routes(router);
  const handlers = new Map(
    router.handlers.map((handler) => [handler.requestPath, { handler, maxTimeoutMs: handler.method.methodKind === "unary" ? maxUnaryTimeoutMs : MAX_TIMER_MS }]),
  );
  return (req: NodeRequest, res: NodeResponse) => {
    const route = handlers.get(req.url?.split("?", 1)[0] ?? "");
    if (!route) {
      if (options.fallback) return options.fallback(req, res);
      res.writeHead(404);
      res.end();
      return;
    }
    const { handler, maxTimeoutMs } = route;
    if (req.method === "GET") {
      const problem = badGetMessage(req.url ?? "");
      if (problem) {
        options.logger.debug({ rpc: handler.requestPath, problem }, "refused a malformed Connect GET");
        return writeConnectError(res, problem);
      }
    }
    // The peer's address, for per-client limits of callers without an identity.
    const contextValues = createContextValues().set(clientAddressKey, req.socket?.remoteAddress ?? "unknown");
    if (options.callerIdentity) contextValues.set(callerIdentityKey, options.callerIdentity(req));
    const request = universalRequestFromNodeRequest(req as never, res as never, undefined, contextValues);
    // A plain-object lookup first: most calls carry a deadline, but few an absurd one.
    if (req.headers["connect-timeout-ms"] !== undefined || req.headers["grpc-timeout"] !== undefined) capTimeoutHeaders(request.header, maxTimeoutMs);
    handler(request)
      .then((response) => {
        // Most responses need no correction: written at once, without another turn of the queue.
        const corrected = correctErrorResponse(response);
        return corrected instanceof Promise ? corrected.then((rewritten) => universalResponseToNodeResponse(rewritten, res as never)) : universalResponseToNodeResponse(corrected, res as never);
      })
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        options.logger.error({ err: reason, rpc: handler.requestPath }, "writing the response failed");
      });
  };
}

/**
 * Why the `message` query parameter of a Connect GET cannot be decoded, if it cannot.
 * Only base64 can be malformed: without `base64=1` the parameter is the message itself.
 */
function badGetMessage(url: string): string | undefined {
  const start = url.indexOf("?");
  const query = new URLSearchParams(start < 0 ? "" : url.slice(start + 1));
  if (query.get("base64") !== "1") return undefined;
  try {
    base64Decode(query.get("message") ?? "");
    return undefined;
  } catch {
    return "message: query parameter is not valid base64url";
  }
}

function writeConnectError(res: NodeResponse, message: string): void {
  const body = JSON.stringify({ code: "invalid_argument", message });
  res.writeHead(400, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** How connect-es words the client mistakes it reports as INTERNAL (see createNodeHandler). */
const CLIENT_FAULTS = ["parse binary:", "received compressed envelope, but do not know how to decompress"];
const isClientFault = (message: string | null | undefined) => message != null && CLIENT_FAULTS.some((fault) => message.startsWith(fault));
const isGrpcClientFault = (status: string | null | undefined, message: string | null | undefined) =>
  status === String(Code.Internal) && message != null && isClientFault(decodeURIComponent(message));

/** gRPC's percent-encoding: only '%' and bytes outside printable ASCII are escaped. */
function encodeGrpcMessage(message: string): string {
  return [...utf8Encoder.encode(message)]
    .map((byte) => (byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`))
    .join("");
}

function correctErrorResponse(response: UniversalServerResponse): UniversalServerResponse | Promise<UniversalServerResponse> {
  // gRPC sends the status in HTTP trailers, or in the headers when no message precedes it.
  for (const fields of [response.header, response.trailer]) {
    const message = fields?.get("grpc-message");
    if (!fields || message == null) continue;
    if (isGrpcClientFault(fields.get("grpc-status"), message)) fields.set("grpc-status", String(Code.InvalidArgument));
    fields.set("grpc-message", encodeGrpcMessage(decodeURIComponent(message)));
  }
  if (!response.body) return response;
  const contentType = response.header?.get("content-type") ?? "";
  // gRPC-Web sends its trailers as the body's last frame, flagged 0x80.
  if (contentType.startsWith("application/grpc-web")) return { ...response, body: rewriteTrailerFrames(response.body) };
  // The Connect protocol answers a unary error with an HTTP status and a small JSON body.
  if (response.status === 500 && contentType.startsWith("application/json")) return rewriteConnectError(response, response.body);
  return response;
}

/** A streaming request's input, with the client faults connect-es raises as INTERNAL reclassified. */
const streamClientFaultInterceptor: Interceptor = (next) => (req) => (req.stream ? next({ ...req, message: mappingErrors(req.message, reclassifyClientFault) }) : next(req));

const reclassifyClientFault = (err: unknown) =>
  err instanceof ConnectError && err.code === Code.Internal && isClientFault(err.rawMessage) ? new ConnectError(err.rawMessage, Code.InvalidArgument) : err;

const TRAILERS_FLAG = 0x80;
const COMPRESSED_FLAG = 0x01;

/**
 * gRPC-Web trailer frames with grpc-message encoded as gRPC's, and a client fault's status
 * corrected. connect-es writes each frame as one chunk; a compressed one is passed on as is.
 */
async function* rewriteTrailerFrames(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    const flags = chunk[0]!;
    const corrected = flags & TRAILERS_FLAG && !(flags & COMPRESSED_FLAG) ? correctTrailers(utf8Decoder.decode(chunk.subarray(5))) : undefined;
    if (corrected === undefined) {
      yield chunk;
      continue;
    }
    const trailers = utf8Encoder.encode(corrected);
    const frame = new Uint8Array(5 + trailers.byteLength);
    frame[0] = flags;
    new DataView(frame.buffer).setUint32(1, trailers.byteLength);
    frame.set(trailers, 5);
    yield frame;
  }
}

/** The corrected text of gRPC-Web trailers, or undefined if they carry no message. */
function correctTrailers(text: string): string | undefined {
  const status = /grpc-status: ?(\d+)/.exec(text)?.[1];
  const message = /grpc-message: ?([^\r\n]*)/.exec(text)?.[1];
  if (message === undefined) return undefined;
  const corrected = isGrpcClientFault(status, message) ? text.replace(/grpc-status: ?\d+/, `grpc-status: ${Code.InvalidArgument}`) : text;
  return corrected.replace(/grpc-message: ?[^\r\n]*/, () => `grpc-message: ${encodeGrpcMessage(decodeURIComponent(message))}`);
}

async function rewriteConnectError(response: UniversalServerResponse, body: AsyncIterable<Uint8Array>): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  const replay = (data: Uint8Array) => ({ ...response, body: (async function* () { yield data; })() });
  let error: { code?: string; message?: string } = {};
  try {
    error = JSON.parse(bytes.toString("utf8")) as typeof error;
  } catch {
    return replay(bytes); // not a Connect error body; pass it on untouched
  }
  if (error.code !== "internal" || !isClientFault(error.message)) return replay(bytes);
  const rewritten = utf8Encoder.encode(JSON.stringify({ ...error, code: "invalid_argument" }));
  response.header?.set("content-length", String(rewritten.byteLength));
  return { ...replay(rewritten), status: 400 };
}
