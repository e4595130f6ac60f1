import { constants, type Http2Server, type Http2Session, type ServerHttp2Stream } from "node:http2";
import type { Socket } from "node:net";
import { checkIntervalMs, type ConnectionLimits } from "./connection-limits.js";

/** What is known of one HTTP/2 session: its open streams, and since when it has had none. */
export interface Http2SessionState {
  open: number;
  idleSince: number;
}

interface TrackedSession extends Http2SessionState {
  readonly startedAt: number;
  /** The client's SETTINGS arrived: it completed its connection preface. */
  settled: boolean;
  /** Streams whose request is still arriving, and when their headers did. */
  readonly receiving: Map<ServerHttp2Stream, number>;
  /** Every open stream, and when it opened. */
  readonly streams: Map<ServerHttp2Stream, number>;
}

/**
 * The HTTP/2 sessions of a server, with the timeouts Node does not apply to them: a client
 * must send its SETTINGS within the headers timeout, each request must be received within
 * the request timeout (the stream is reset, CANCEL), no stream may outlive the maximum stream
 * duration (reset, CANCEL), and a session with no open stream for the idle timeout gets GOAWAY. Node's own session timeout (`setTimeout`) would not do: any
 * frame, a PING included, resets it, so a client that only pings would hold its session.
 * One timer checks every session, rather than one timer per stream on the call path.
 */
export function trackHttp2Sessions(http2: Http2Server, limits: Pick<ConnectionLimits, "headersTimeoutMs" | "requestTimeoutMs" | "idleTimeoutMs" | "maxStreamDurationMs">) {
  const sessions = new Map<Http2Session, TrackedSession>();
  /** The sockets handed to the server (session.socket is a proxy, not the socket). */
  const sockets = new Set<Socket>();
  http2.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  http2.on("session", (session) => {
    const now = Date.now();
    const state: TrackedSession = { open: 0, idleSince: now, startedAt: now, settled: false, receiving: new Map(), streams: new Map() };
    sessions.set(session, state);
    session.once("remoteSettings", () => (state.settled = true));
    session.on("stream", (stream) => {
      state.open++;
      state.streams.set(stream, Date.now());
      if (!stream.endAfterHeaders) {
        state.receiving.set(stream, Date.now());
        stream.once("end", () => state.receiving.delete(stream));
      }
      stream.once("close", () => {
        state.open--;
        state.idleSince = Date.now();
        state.receiving.delete(stream);
        state.streams.delete(stream);
      });
    });
    session.once("close", () => sessions.delete(session));
  });

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [session, state] of sessions) {
      if (!state.settled && now - state.startedAt >= limits.headersTimeoutMs) {
        session.destroy();
        continue;
      }
      for (const [stream, since] of state.receiving) {
        if (now - since >= limits.requestTimeoutMs) {
          state.receiving.delete(stream);
          stream.close(constants.NGHTTP2_CANCEL);
        }
      }
      for (const [stream, openedAt] of state.streams) {
        if (now - openedAt >= limits.maxStreamDurationMs) {
          state.streams.delete(stream);
          stream.close(constants.NGHTTP2_CANCEL);
        }
      }
      if (state.open === 0 && now - state.idleSince >= limits.idleTimeoutMs) {
        // GOAWAY first, so the client opens a new session for its next call instead of
        // failing it; a session already told and still here is dropped.
        if (session.closed) session.destroy();
        else session.close();
      }
    }
  }, checkIntervalMs([limits.headersTimeoutMs, limits.requestTimeoutMs, limits.idleTimeoutMs, limits.maxStreamDurationMs]));
  sweep.unref();

  return {
    sessions: sessions as ReadonlyMap<Http2Session, Http2SessionState>,
    sockets: sockets as ReadonlySet<Socket>,
    stop: () => clearInterval(sweep),
  };
}
