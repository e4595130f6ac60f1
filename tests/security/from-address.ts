import { connect } from "node:net";
import type { ClientSessionOptions } from "node:http2";

/**
 * HTTP/2 client options that connect from another loopback address: attack traffic comes
 * from 127.0.0.2 and up, so the honest calls from 127.0.0.1 are counted apart. (Node passes
 * unknown options on to net.connect, but the http2 types do not declare localAddress.)
 */
export function fromAddress(localAddress: string): ClientSessionOptions {
  return { createConnection: (authority: URL) => connect({ host: authority.hostname, port: Number(authority.port), localAddress }) };
}
