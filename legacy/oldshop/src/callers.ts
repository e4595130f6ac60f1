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

/** Splits at `separator` outside double quotes, as x-forwarded-client-cert quotes values that may hold one. */
function splitUnquoted(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  for (const char of text) {
    if (char === '"') quoted = !quoted;
    if (char === separator && !quoted) {
      parts.push(current);
      current = "";
    } else current += char;
  }
  return [...parts, current];
}

/** The URI= of the last element of x-forwarded-client-cert: the client the nearest proxy verified. */
function forwardedIdentity(header: string): string | undefined {
  const last = splitUnquoted(header, ",").at(-1) ?? "";
  const uris = splitUnquoted(last, ";")
    .map((pair) => pair.trim())
    .filter((pair) => pair.toLowerCase().startsWith("uri="))
    .map((pair) => pair.slice(4).replace(/^"(.*)"$/, "$1"));
  return uris.length === 1 && uris[0]!.startsWith("spiffe://") ? uris[0] : undefined;
}

/**
 * The caller: under TLS, its verified client certificate; without (a sidecar terminates
 * mTLS), the identity the sidecar forwards, believed only from `trustedProxies`.
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
