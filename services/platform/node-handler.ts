import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError, createConnectRouter, createContextKey, createContextValues, type ConnectRouter, type ConnectRouterOptions } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import type { Logger } from "./logger.js";

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

/** The TCP peer of the call, available to interceptors through req.contextValues. */
export const clientAddressKey = createContextKey<string>("unknown", { description: "client address" });

/**
 * connectNodeAdapter, plus two corrections for interoperability:
 * - connect-es reports a request body that is not valid protobuf as INTERNAL ("parse
 *   binary: ..."), although the fault is the client's; JSON that fails to parse is already
 *   INVALID_ARGUMENT, and connect-go answers both with INVALID_ARGUMENT. We rewrite that one
 *   error, in each protocol's framing, so clients can tell their own mistake from ours.
 * - connect-es percent-encodes grpc-message with encodeURIComponent, escaping printable
 *   characters such as ":" that the gRPC spec leaves bare; @grpc/grpc-js then shows
 *   "items%3A must not be empty". We re-encode it as the spec says.
 */
export function createNodeHandler(
  options: ConnectRouterOptions & {
    routes: (router: ConnectRouter) => void;
    logger: Logger;
    /** Serves what is not an RPC, e.g. a web page; 404 if absent. */
    fallback?: (req: NodeRequest, res: NodeResponse) => void;
  },
) {
  const router = createConnectRouter({ acceptCompression: [compressionGzip, compressionBrotli], ...options });
  options.routes(router);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  return (req: NodeRequest, res: NodeResponse) => {
    const handler = handlers.get(req.url?.split("?", 1)[0] ?? "");
    if (!handler) {
      if (options.fallback) return options.fallback(req, res);
      res.writeHead(404);
      res.end();
      return;
    }
    // The peer's address, for per-client limits of callers without an identity.
    const contextValues = createContextValues().set(clientAddressKey, req.socket?.remoteAddress ?? "unknown");
    handler(universalRequestFromNodeRequest(req as never, res as never, undefined, contextValues))
      .then(correctErrorResponse)
      .then((response) => universalResponseToNodeResponse(response, res as never))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        options.logger.error({ err: reason, rpc: handler.requestPath }, "writing the response failed");
      });
  };
}

const PARSE_ERROR = "parse binary:";
const isParseError = (status: string | null | undefined, message: string | null | undefined) =>
  status === String(Code.Internal) && message != null && decodeURIComponent(message).startsWith(PARSE_ERROR);

/** gRPC's percent-encoding: only '%' and bytes outside printable ASCII are escaped. */
function encodeGrpcMessage(message: string): string {
  return [...new TextEncoder().encode(message)]
    .map((byte) => (byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`))
    .join("");
}

async function correctErrorResponse(response: UniversalServerResponse): Promise<UniversalServerResponse> {
  // gRPC sends the status in HTTP trailers, or in the headers when no message precedes it.
  for (const fields of [response.header, response.trailer]) {
    const message = fields?.get("grpc-message");
    if (!fields || message == null) continue;
    if (isParseError(fields.get("grpc-status"), message)) fields.set("grpc-status", String(Code.InvalidArgument));
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

async function* rewriteTrailerFrames(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    if (chunk[0] !== 0x80) {
      yield chunk;
      continue;
    }
    const text = new TextDecoder().decode(chunk.subarray(5));
    const status = /grpc-status: ?(\d+)/.exec(text)?.[1];
    const message = /grpc-message: ?([^\r\n]*)/.exec(text)?.[1];
    if (!isParseError(status, message)) {
      yield chunk;
      continue;
    }
    const trailers = new TextEncoder().encode(text.replace(/grpc-status: ?\d+/, `grpc-status: ${Code.InvalidArgument}`));
    const frame = new Uint8Array(5 + trailers.byteLength);
    frame[0] = 0x80;
    new DataView(frame.buffer).setUint32(1, trailers.byteLength);
    frame.set(trailers, 5);
    yield frame;
  }
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
  if (error.code !== "internal" || !error.message?.startsWith(PARSE_ERROR)) return replay(bytes);
  const rewritten = new TextEncoder().encode(JSON.stringify({ ...error, code: "invalid_argument" }));
  response.header?.set("content-length", String(rewritten.byteLength));
  return { ...replay(rewritten), status: 400 };
}
