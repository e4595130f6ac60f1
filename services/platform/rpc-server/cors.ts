import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;
type NodeHandler = (req: NodeRequest, res: NodeResponse) => void;

export interface CorsOptions {
  /** Allowed origins, e.g. "http://localhost:5173"; "*" allows any. */
  origins: readonly string[];
  /** How long a browser may cache a preflight answer. */
  maxAgeSeconds?: number;
}

/**
 * CORS for browser callers on other origins, with the methods and headers the Connect,
 * gRPC-Web and gRPC protocols need (connect's own list). Preflights are answered here;
 * other requests from an allowed origin get the response headers a browser checks.
 */
export function withCors(handler: NodeHandler, options: CorsOptions): NodeHandler {
  const allowAny = options.origins.includes("*");
  const allowed = (origin: string | undefined): origin is string => origin !== undefined && (allowAny || options.origins.includes(origin));
  return (req, res) => {
    const origin = req.headers.origin;
    if (allowed(origin)) {
      res.setHeader("access-control-allow-origin", allowAny ? "*" : origin);
      res.setHeader("vary", "origin");
      res.setHeader("access-control-expose-headers", connectCors.exposedHeaders.join(", "));
    }
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"]) {
      if (!allowed(origin)) {
        res.writeHead(403);
        res.end();
        return;
      }
      res.writeHead(204, {
        "access-control-allow-methods": connectCors.allowedMethods.join(", "),
        "access-control-allow-headers": [...connectCors.allowedHeaders, "Authorization"].join(", "),
        "access-control-max-age": String(options.maxAgeSeconds ?? 7200),
      });
      res.end();
      return;
    }
    handler(req, res);
  };
}
