import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { PeerCertificate } from "node:tls";

/**
 * Workload identities are SPIFFE IDs in this trust domain, spiffe://meshwork/<name>, carried
 * as the URI SAN of each mesh certificate. <name> is a deployable of the manifest, or
 * "operator" for the certificate that tools and people use.
 */
export const TRUST_DOMAIN = "meshwork";
const SPIFFE_PREFIX = `spiffe://${TRUST_DOMAIN}/`;
const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export const identityUri = (name: string) => `${SPIFFE_PREFIX}${name}`;

/** The name in spiffe://meshwork/<name>; undefined for any other URI, another trust domain included. */
export function nameOfIdentityUri(uri: string): string | undefined {
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
 * The client identity a sidecar proxy (Envoy, Istio, Linkerd) verified, from its
 * x-forwarded-client-cert header: the URI= of the last element, the hop nearest to us.
 * Believed only from a trusted proxy (MESH_TLS=off).
 */
export function identityOfForwardedCert(header: string | undefined): string | undefined {
  const last = header?.split(",").at(-1);
  const uri = last
    ?.split(";")
    .map((pair) => pair.trim())
    .find((pair) => pair.startsWith("URI="))
    ?.slice(4)
    .replace(/^"|"$/g, "");
  return uri === undefined ? undefined : nameOfIdentityUri(uri);
}

/** The caller's verified mesh identity; undefined for a caller without one. */
export const callerIdentityKey = createContextKey<string | undefined>(undefined, { description: "the caller's verified mesh identity" });

/** The deployable that acts for customers: the public edge, which verifies their tokens. */
export const CUSTOMER_AGENT = "gateway";

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
