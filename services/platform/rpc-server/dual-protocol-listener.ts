import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import type { Server as TlsServer, TLSSocket } from "node:tls";
import type { Http2Server } from "node:http2";
import type { Server as Http1Server } from "node:http";
import { normalizeAddress } from "./client-address.js";
import { createKeyedCounts } from "./keyed-counts.js";

/** Every cleartext HTTP/2 connection opens with this preface (RFC 9113, section 3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface AcceptLimits {
  /** A connection not yet classified after this is closed. */
  detectTimeoutMs: number;
  /** Open connections in all; Node's net.Server closes the ones past it at accept. */
  maxConnections: number;
  /** Open connections from one peer address, unless `exempt` says otherwise. */
  maxConnectionsPerAddress: number;
  /** Peers not held to the per-address cap: trusted proxies, which carry many clients. */
  exempt?: (address: string) => boolean;
}

/** The listener, and for each accepted socket the one handed to an HTTP server (its TLS socket, under TLS). */
export interface DualProtocolListener extends NetServer {
  servingSocket(accepted: Socket): Socket;
}

/**
 * One TCP port for browsers (HTTP/1.1) and gRPC clients (cleartext HTTP/2, "h2c" with prior
 * knowledge). Node's http2 server accepts HTTP/1.1 only over TLS with ALPN, so the listener
 * peeks at the first bytes: a connection that starts with the HTTP/2 preface goes to the
 * http2 server, any other to the http server. Both run the same Connect handler.
 *
 * It is also where connections are refused: past the caps, a new connection is closed
 * before a byte of it is read, and one that has not said which protocol it speaks within
 * the detection timeout is closed, since neither HTTP server has it yet to time it out.
 *
 * Under TLS (a mesh port) the `tls` server, which never listens itself, does the handshake
 * (within its handshakeTimeout), and ALPN says the protocol: "h2" goes to the http2 server,
 * anything else to the http server.
 */
export function createDualProtocolListener(
  http1: Http1Server,
  http2: Http2Server,
  limits: AcceptLimits,
  tls?: TlsServer,
): DualProtocolListener {
  const perAddress = createKeyedCounts();
  const served = new WeakMap<Socket, Socket>();
  tls?.on("secureConnection", (secure: TLSSocket) => {
    // The accepted socket it wraps; Node has no public accessor for it.
    const accepted = (secure as TLSSocket & { _parent?: Socket })._parent;
    if (accepted) served.set(accepted, secure);
    if (secure.alpnProtocol === "h2") http2.emit("connection", secure);
    else http1.emit("connection", secure);
  });
  const server = createNetServer((socket) => {
    socket.on("error", () => socket.destroy());
    if (!admit(socket)) return;
    if (tls) {
      tls.emit("connection", socket); // it times out the handshake itself
      return;
    }
    const detection = setTimeout(() => socket.destroy(), limits.detectTimeoutMs);
    socket.once("close", () => clearTimeout(detection));
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const compared = Math.min(seen.length, HTTP2_PREFACE.length);
      const isHttp2 = seen.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
      if (isHttp2 && compared < HTTP2_PREFACE.length) return; // wait for the rest of the preface
      clearTimeout(detection);
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
  });
  server.maxConnections = limits.maxConnections;

  /** Counts the connection against its address, or closes it if the address is at its cap. */
  function admit(socket: Socket): boolean {
    const address = normalizeAddress(socket.remoteAddress ?? "unknown");
    if (limits.exempt?.(address)) return true;
    if (!perAddress.tryTake(address, limits.maxConnectionsPerAddress)) {
      socket.destroy();
      return false;
    }
    socket.once("close", () => perAddress.release(address));
    return true;
  }
  return Object.assign(server, { servingSocket: (accepted: Socket) => served.get(accepted) ?? accepted });
}
