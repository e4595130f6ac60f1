import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { PeerCertificate } from "node:tls";

/**
 * Workload identities are SPIFFE IDs in this trust domain, spiffe://meshwork/<name>, carried
 * as the URI SAN of each mesh certificate. <name> is a deployable of the manifest, "operator"
 * for the certificate that tools and people use, or "console" for the operator console's backend.
 */
const TRUST_DOMAIN = "meshwork";
const SPIFFE_PREFIX = `spiffe://${TRUST_DOMAIN}/`;
const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export const identityUri = (name: string) => `${SPIFFE_PREFIX}${name}`;

/** The name in spiffe://meshwork/<name>; undefined for any other URI, another trust domain included. */
function nameOfIdentityUri(uri: string): string | undefined {
  if (!uri.startsWith(SPIFFE_PREFIX)) return undefined;
  const name = uri.slice(SPIFFE_PREFIX.length);
  return NAME.test(name) ? name : undefined;
}

/**
 * The mesh identity a certificate carries: its one spiffe://meshwork/ URI SAN. A certificate
 * naming two identities names none, since either reading could be the wrong one.
 */
export function identityOfCertificate(cert: Pick<PeerCertificate, "subjectaltname"> | undefined): string | undefined {
  const uris = (cert?.subjectaltname ?? "")
    .split(", ")
    .filter((entry) => entry.startsWith("URI:"))
    .map((entry) => nameOfIdentityUri(entry.slice(4)));
  return uris.length === 1 ? uris[0] : undefined;
}

/**
 * Splits `text` at `separator` outside double quotes: Envoy quotes XFCC values (a Subject,
 * a DNS name) that may hold "," or ";", and a value must never be read as a field.
 */
function splitUnquoted(text: string, separator: string): string[] | undefined {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (char === "\\" && quoted) {
      current += char + (text[++i] ?? "");
      continue;
    }
    if (char === '"') quoted = !quoted;
    if (char === separator && !quoted) {
      parts.push(current);
      current = "";
    } else current += char;
  }
  return quoted ? undefined : [...parts, current];
}

/**
 * The client identity a sidecar proxy (Envoy, Istio, Linkerd) verified, from its
 * x-forwarded-client-cert header: the one URI= of the last element, the hop nearest to us.
 * Anything malformed (an unclosed quote, two URIs) names nobody. Believed only from a
 * trusted proxy (MESH_TLS=off).
 */
export function identityOfForwardedCert(header: string | undefined): string | undefined {
  const last = header === undefined ? undefined : splitUnquoted(header, ",")?.at(-1);
  const fields = last === undefined ? undefined : splitUnquoted(last, ";");
  const uris = (fields ?? []).map((field) => field.trim()).filter((field) => field.slice(0, 4).toUpperCase() === "URI=");
  if (uris.length !== 1) return undefined;
  const value = uris[0]!.slice(4);
  return nameOfIdentityUri(value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value);
}

/** The caller's verified mesh identity; undefined for a caller without one. */
export const callerIdentityKey = createContextKey<string | undefined>(undefined, { description: "the caller's verified mesh identity" });

/** The header in which the gateway names the customer it verified. */
export const CUSTOMER_HEADER = "x-meshwork-customer";

/** The customer a call acts for, as the gateway vouched for it; undefined if it acts for none. */
export const actingCustomerKey = createContextKey<string | undefined>(undefined, { description: "the customer the gateway acts for" });

/** Who is calling, for handlers that answer callers differently (an operator sees every customer). */
export const callerOf = (ctx: HandlerContext) => ctx.values.get(callerIdentityKey);

/** The customer the gateway acts for in this call, if it does. */
export const actingCustomerOf = (ctx: HandlerContext) => ctx.values.get(actingCustomerKey);

/**
 * The customer a call acts for: the one the gateway verified, never a body field alone. A
 * body customer_id naming someone else is refused. Without an acting customer (an
 * operator's call) it is undefined, and the body names whom the caller asks about.
 */
export function customerOf(ctx: HandlerContext, bodyCustomerId: string): string | undefined {
  const acting = actingCustomerOf(ctx);
  if (acting !== undefined && bodyCustomerId !== "" && bodyCustomerId !== acting) {
    throw new ConnectError("customer_id: does not match the customer the gateway acts for", Code.PermissionDenied);
  }
  return acting;
}

/** Tools and people: no deployable, with a client-only certificate and a NATS user of its own. */
export const OPERATOR = "operator";

/**
 * The operator console's backend, in the gateway's operator listener: a principal of its own,
 * not the operator's. Its client-only certificate (spiffe://meshwork/console) is admitted
 * only by the saga admin RPCs the console calls, where it names the signed-in operator in
 * x-operator; its NATS user reads and replays SHOP_DLQ alone. The gateway, internet-facing,
 * holds these credentials and never the operator's.
 */
export const CONSOLE = "console";
