import { createServer as createNetServer, type Server as NetServer } from "node:net";
import type { Http2Server } from "node:http2";
import type { Server as Http1Server } from "node:http";

/** Every cleartext HTTP/2 connection opens with this preface (RFC 9113, section 3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * One TCP port for browsers (HTTP/1.1) and gRPC clients (cleartext HTTP/2, "h2c" with prior
 * knowledge). Node's http2 server accepts HTTP/1.1 only over TLS with ALPN, so the listener
 * peeks at the first bytes: a connection that starts with the HTTP/2 preface goes to the
 * http2 server, any other to the http server. Both run the same Connect handler.
 */
export function createDualProtocolListener(http1: Http1Server, http2: Http2Server): NetServer {
  return createNetServer((socket) => {
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const compared = Math.min(seen.length, HTTP2_PREFACE.length);
      const isHttp2 = seen.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
      if (isHttp2 && compared < HTTP2_PREFACE.length) return; // wait for the rest of the preface
      socket.off("data", onData);
      socket.pause();
      socket.unshift(seen);
      if (isHttp2) {
        // The http2 session reads the socket natively and first drains what we unshifted.
        http2.emit("connection", socket);
      } else {
        http1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
}
