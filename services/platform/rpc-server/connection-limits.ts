/**
 * What one inbound connection may hold, and for how long. Every port the kit serves applies
 * these, so a caller that connects and stalls, or opens connections without end, costs a
 * bounded number of file descriptors and bytes, however it misbehaves.
 */
export interface ConnectionLimits {
  /**
   * A new connection must send enough bytes to tell HTTP/1.1 from HTTP/2 (at most the
   * 24-byte HTTP/2 preface) within this; honest clients send them with their first packet.
   */
  detectTimeoutMs: number;
  /**
   * HTTP/1.1: a request's headers must arrive within this of its first byte. HTTP/2: the
   * client's SETTINGS must arrive within this of its preface.
   */
  headersTimeoutMs: number;
  /**
   * A request's body must be fully received within this of its first byte (HTTP/1.1) or of
   * its headers (HTTP/2). It bounds receiving only: a long server-streaming response, such as
   * WatchOrder, runs after its request is complete and is not cut.
   */
  requestTimeoutMs: number;
  /**
   * HTTP/1.1 keep-alive connections with no request in flight, and HTTP/2 sessions with no
   * open stream, are closed (HTTP/2 with GOAWAY) after this. Clients reconnect transparently.
   */
  idleTimeoutMs: number;
  /** Open connections across all clients; past it, new ones are closed at accept. */
  maxConnections: number;
  /**
   * Open connections from one TCP peer address; past it, new ones are closed at accept.
   * Trusted proxies are exempt: every client behind them shares their address.
   */
  maxConnectionsPerAddress: number;
  /** HTTP/2 streams one session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
  /**
   * The longest any call may last, a streaming one included (Envoy's max_stream_duration):
   * an HTTP/2 stream older than this is reset (CANCEL), an HTTP/1.1 response's connection is
   * closed. A server stream whose client stopped reading is stuck at a write that never
   * drains and cannot end itself; without this it would hold its memory, and any slot it
   * took (a WatchOrder cap), for as long as the client keeps the connection open. Clients
   * of long streams (WatchOrder, Health.Watch) reconnect.
   */
  maxStreamDurationMs: number;
}

/**
 * Defaults sized for honest clients on slow links, with room for the bench and tests, which
 * all connect from 127.0.0.1: the load runner holds 33 HTTP/2 sessions, and undici opens one
 * HTTP/1.1 connection per concurrent fetch. Node's own defaults are looser (60 s headers,
 * 300 s request, no cap on connections or streams) and do not apply here anyway: they are
 * enforced only for servers that listen themselves.
 */
export const defaultConnectionLimits: Readonly<ConnectionLimits> = {
  detectTimeoutMs: 5_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
  maxConnections: 4_096,
  maxConnectionsPerAddress: 256,
  // grpc-go's and nginx's figure: plenty for multiplexing, and a session's streams times
  // maxConnectionsPerAddress bounds what one address can hold open.
  maxConcurrentStreams: 100,
  // Longer than a WatchOrder may run (5 minutes), so only a stuck stream meets it.
  maxStreamDurationMs: 10 * 60_000,
};

/**
 * How often timers are checked: a quarter of the shortest timeout, at most once a second,
 * so a timeout fires at most 25% (or 1 s) late, and each sweep costs one timer, not one per
 * connection or stream.
 */
export function checkIntervalMs(timeoutsMs: readonly number[]): number {
  return Math.max(10, Math.min(1_000, ...timeoutsMs.map((ms) => Math.floor(ms / 4))));
}
