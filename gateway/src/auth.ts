import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { SignJWT, createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from "jose";
import type { DescService } from "@bufbuild/protobuf";
import type { AuthConfig } from "./config.js";

/** The authenticated customer of a call; empty for anonymous methods. */
export const customerKey = createContextKey<string>("", { description: "customer id from the bearer token" });

export interface Authenticator {
  /** The customer id a token speaks for; throws if the token is not valid. */
  verify(token: string): Promise<string>;
  /** Signs a demo token; only the local authenticator can. */
  issue?(customerId: string): Promise<{ token: string; expiresInSeconds: number }>;
}

const LOCAL_ISSUER = "meshwork-local";
const AUDIENCE = "meshwork";
const DEMO_TOKEN_SECONDS = 12 * 60 * 60;

/**
 * Local mode: HS256 tokens signed with a shared secret, issued by IssueDemoToken so the
 * console and curl can act as any customer. JWKS mode: tokens from a real identity
 * provider, verified against its published keys.
 */
export function createAuthenticator(config: AuthConfig): Authenticator {
  if (config.mode === "jwks") {
    const keys: JWTVerifyGetKey = createRemoteJWKSet(new URL(config.jwksUrl));
    return {
      async verify(token) {
        const { payload } = await jwtVerify(token, keys, { audience: config.audience, ...(config.issuer ? { issuer: config.issuer } : {}) });
        if (!payload.sub) throw new Error("token has no subject");
        return payload.sub;
      },
    };
  }
  const secret = new TextEncoder().encode(config.secret);
  return {
    async verify(token) {
      const { payload } = await jwtVerify(token, secret, { issuer: LOCAL_ISSUER, audience: AUDIENCE, algorithms: ["HS256"] });
      if (!payload.sub) throw new Error("token has no subject");
      return payload.sub;
    },
    async issue(customerId) {
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(customerId)
        .setIssuer(LOCAL_ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(`${DEMO_TOKEN_SECONDS}s`)
        .sign(secret);
      return { token, expiresInSeconds: DEMO_TOKEN_SECONDS };
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
    if (req.service.typeName !== guarded.typeName || anonymousMethods.has(req.method.name)) return next(req);
    const header = req.header.get("authorization") ?? "";
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    if (!token) throw new ConnectError("missing bearer token", Code.Unauthenticated);
    let customer: string;
    try {
      customer = await authenticator.verify(token);
    } catch {
      throw new ConnectError("invalid or expired bearer token", Code.Unauthenticated);
    }
    req.contextValues.set(customerKey, customer);
    return next(req);
  };
}
