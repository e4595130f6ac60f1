import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { SignJWT, createRemoteJWKSet, decodeJwt, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import type { DescService } from "@bufbuild/protobuf";
import { isSafePrincipalId, PRINCIPAL_ID_RULE } from "#platform";
import type { AuthConfig } from "./config.js";

/** The authenticated customer of a call; on an open method, set when a valid token came along, else empty. */
export const customerKey = createContextKey<string>("", { description: "customer id from the bearer token" });

/**
 * The customer the per-client rate limit counts a call against: set only on methods that
 * require a token. On an open method the customer serves the canary's sticky key alone: demo
 * tokens are free in local mode, so counting by them would let one address multiply its rate
 * by rotating tokens.
 */
export const rateLimitedCustomerKey = createContextKey<string>("", { description: "customer id the rate limit counts, on guarded methods" });

export interface Authenticator {
  /** The customer id a token speaks for; throws if the token is not valid. */
  verify(token: string): Promise<string>;
  /** Signs a demo token; only the local authenticator can. Throws InvalidArgument for an unsafe customer id. */
  issue?(customerId: string): Promise<{ token: string; expiresInSeconds: number }>;
}

const LOCAL_ISSUER = "meshwork-local";
const AUDIENCE = "meshwork";
const DEMO_TOKEN_SECONDS = 12 * 60 * 60;
/** AUTH_MAX_TOKEN_LIFETIME_SECONDS when unset. */
export const defaultMaxTokenLifetimeSeconds = 24 * 60 * 60;

/**
 * A token without an end would be good forever once leaked. jose's maxTokenAge is not used:
 * it needs an iat (which not every provider sets) and bounds only the age since
 * iat, so a freshly issued token whose exp is centuries away would still pass today.
 */
const requiredClaims = { requiredClaims: ["exp", "sub"] };

/**
 * The algorithms a token from an identity provider's JWKS may be signed with: asymmetric
 * ones only. The keys are public, so a symmetric algorithm (HS256 keyed with a published key)
 * or "none" would let anyone sign.
 */
export const JWKS_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

/**
 * The subject a verified payload names, if its lifetime and subject are acceptable: customers'
 * tokens and operators' (operator-auth.ts) alike. Throws an Error saying which is not.
 */
export function subjectOf(payload: JWTPayload, maxLifetimeSeconds: number): string {
  const now = Math.floor(Date.now() / 1000);
  // Counted from now when iat is absent or in the future: an iat far ahead would otherwise
  // make an exp just as far ahead look short-lived.
  const issuedAt = Math.min(payload.iat ?? now, now);
  // exp is there (requiredClaims) and a number (jose checks it).
  if (payload.exp! - issuedAt > maxLifetimeSeconds) throw new Error(`token lives longer than ${maxLifetimeSeconds} s`);
  if (typeof payload.sub !== "string" || !isSafePrincipalId(payload.sub)) throw new Error(`token subject ${PRINCIPAL_ID_RULE}`);
  return payload.sub;
}

/**
 * Local mode: HS256 tokens signed with a shared secret, issued by IssueDemoToken so the
 * console and curl can act as any customer. JWKS mode: tokens from a real identity
 * provider, verified against its published keys. Either way a token must carry a safe
 * subject and an exp at most maxTokenLifetimeSeconds after it was issued.
 */
export function createAuthenticator(config: AuthConfig): Authenticator {
  const maxLifetime = config.maxTokenLifetimeSeconds ?? defaultMaxTokenLifetimeSeconds;
  if (config.mode === "jwks") {
    const keys: JWTVerifyGetKey = createRemoteJWKSet(new URL(config.jwksUrl));
    return {
      async verify(token) {
        const { payload } = await jwtVerify(token, keys, { ...requiredClaims, audience: config.audience, algorithms: JWKS_ALGORITHMS, ...(config.issuer ? { issuer: config.issuer } : {}) });
        return subjectOf(payload, maxLifetime);
      },
    };
  }
  const secret = new TextEncoder().encode(config.secret);
  // A demo token the gateway would itself refuse is no use to anyone.
  const demoSeconds = Math.min(DEMO_TOKEN_SECONDS, maxLifetime);
  return {
    async verify(token) {
      const { payload } = await jwtVerify(token, secret, { ...requiredClaims, issuer: LOCAL_ISSUER, audience: AUDIENCE, algorithms: ["HS256"] });
      return subjectOf(payload, maxLifetime);
    },
    async issue(customerId) {
      if (!isSafePrincipalId(customerId)) throw new ConnectError(`customer_id: ${PRINCIPAL_ID_RULE}`, Code.InvalidArgument);
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(customerId)
        .setIssuer(LOCAL_ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(`${demoSeconds}s`)
        .sign(secret);
      return { token, expiresInSeconds: demoSeconds };
    },
  };
}

/** How long a verified token is trusted without checking its signature again, at most. */
const VERIFIED_TOKEN_TTL_MS = 60_000;
/** Bounds the cache: at most this many tokens, each no longer than a request header may be. */
const VERIFIED_TOKEN_CACHE_SIZE = 10_000;

/**
 * Remembers tokens that verified, so a customer's next call (a WatchOrder after a PlaceOrder,
 * a poll) costs a map lookup instead of a signature check: verification was the gateway's
 * largest single item per order. An entry lasts until the token's exp or a minute, whichever
 * is sooner, so a key rotation or revocation at the provider takes effect within a minute.
 * Failures are not remembered: a flood of bad tokens could otherwise evict the good ones.
 */
export function cachingVerifications(authenticator: Authenticator, now: () => number = Date.now): Authenticator {
  const verified = new Map<string, { customer: string; until: number }>();
  return {
    ...authenticator,
    async verify(token) {
      const hit = verified.get(token);
      if (hit && hit.until > now()) return hit.customer;
      verified.delete(token);
      const customer = await authenticator.verify(token);
      const exp = decodeJwt(token).exp! * 1000; // verified: exp is there and a number
      if (verified.size >= VERIFIED_TOKEN_CACHE_SIZE) verified.delete(verified.keys().next().value!); // the oldest entry
      verified.set(token, { customer, until: Math.min(exp, now() + VERIFIED_TOKEN_TTL_MS) });
      return customer;
    },
  };
}

/**
 * Requires a valid bearer token on every method of `guarded` but the anonymous ones, and
 * puts the customer id in the call's context.
 */
export function createAuthInterceptor(authenticator: Authenticator, guarded: DescService, anonymousMethods: ReadonlySet<string>): Interceptor {
  return (next) => async (req) => {
    // Health checks and the like are not the public API: probes carry no token.
    if (req.service.typeName !== guarded.typeName) return next(req);
    const header = req.header.get("authorization") ?? "";
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    if (anonymousMethods.has(req.method.name)) {
      // Open to anyone, but a signed-in customer is still that customer (a canary route is
      // sticky per customer), though rate limited by address; a token that does not verify
      // makes the call anonymous, not refused.
      if (token) {
        const customer = await authenticator.verify(token).catch(() => undefined);
        if (customer) req.contextValues.set(customerKey, customer);
      }
      return next(req);
    }
    if (!token) throw new ConnectError("missing bearer token", Code.Unauthenticated);
    let customer: string;
    try {
      customer = await authenticator.verify(token);
    } catch {
      throw new ConnectError("invalid or expired bearer token", Code.Unauthenticated);
    }
    req.contextValues.set(customerKey, customer).set(rateLimitedCustomerKey, customer);
    return next(req);
  };
}
