import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";

/** Who is calling, as far as the old shop can tell; "none" is a request without a (trusted) client identity. */
export type Caller = { identity: string } | "none";

/** The one spiffe:// URI SAN of a verified client certificate (a certificate naming two names none). */
function certificateIdentity(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const uris = (socket.getPeerCertificate().subjectaltname ?? "")
    .split(", ")
    .filter((entry) => entry.startsWith("URI:spiffe://"))
    .map((entry) => entry.slice(4));
  return uris.length === 1 ? uris[0] : undefined;
}

/**
 * The key=value pairs of an x-forwarded-client-cert that holds exactly one element, parsed
 * strictly: a value is bare (no `"`, `;` or `,`) or double-quoted from its first character to
 * a closing quote, with a backslash escaping the next character. Anything else is undefined: an
 * unbalanced quote, a stray one, or a second element. A client can send the header itself; a
 * proxy that appends its element to it (Envoy's APPEND_FORWARD) leaves the client's element
 * first, and a client's open quote could swallow the proxy's, so the proxy must replace the
 * header (SANITIZE_SET), and a header with more than one element is no caller.
 */
function singleElement(header: string): [string, string][] | undefined {
  const pairs: [string, string][] = [];
  let at = 0;
  for (;;) {
    const equals = header.indexOf("=", at);
    if (equals < 0) return undefined;
    const key = header.slice(at, equals).trim();
    if (!/^[A-Za-z]+$/.test(key)) return undefined;
    at = equals + 1;
    let value = "";
    if (header[at] === '"') {
      for (at++; header[at] !== '"'; at++) {
        if (at >= header.length) return undefined; // the quote is never closed
        if (header[at] === "\\") at++;
        if (at >= header.length) return undefined;
        value += header[at];
      }
      at++;
    } else {
      while (at < header.length && !';,"'.includes(header[at]!)) value += header[at++];
      if (header[at] === '"') return undefined; // a quote inside a bare value
    }
    pairs.push([key, value]);
    if (at === header.length) return pairs;
    if (header[at] !== ";") return undefined; // a second element (",") or text after a closing quote
    at++;
  }
}

/** The one URI= of x-forwarded-client-cert: the client the sidecar verified. */
function forwardedIdentity(header: string): string | undefined {
  const uris = (singleElement(header) ?? []).filter(([key]) => key.toLowerCase() === "uri").map(([, value]) => value);
  return uris.length === 1 && uris[0]!.startsWith("spiffe://") ? uris[0] : undefined;
}

/**
 * The caller: under TLS, its verified client certificate; without (a sidecar terminates
 * mTLS), the identity the sidecar forwards, believed only from `trustedProxies`, which must
 * replace any x-forwarded-client-cert the client sent rather than append to it.
 */
export function callerOf(req: IncomingMessage, tls: boolean, trustedProxies: ReadonlySet<string>): Caller {
  if (tls) {
    const identity = certificateIdentity(req.socket as TLSSocket);
    return identity ? { identity } : "none";
  }
  const header = req.headers["x-forwarded-client-cert"];
  if (typeof header !== "string" || !trustedProxies.has(req.socket.remoteAddress ?? "")) return "none";
  const identity = forwardedIdentity(header);
  return identity ? { identity } : "none";
}
