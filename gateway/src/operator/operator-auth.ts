import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { SignJWT, createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import { accessOf, callerIdentityKey, isSafePrincipalId, OPERATOR, PRINCIPAL_ID_RULE } from "#platform";
import type { OperatorAuthConfig } from "../config.js";
import { JWKS_ALGORITHMS, subjectOf } from "../auth.js";

/** The signed-in operator of a call (the token's sub, or whom a certificate's caller names): whom the admin RPCs' audit names. */
export const operatorKey = createContextKey<string>("", { description: "the signed-in operator" });

/** The saga admin service's audit names the person in this header, beside the certificate's identity; a caller with the operator certificate names itself in it here too. */
export const OPERATOR_HEADER = "x-operator";

/** Whom the audit names for a caller with the operator certificate that names nobody (safely) in OPERATOR_HEADER. */
const CERTIFICATE_OPERATOR = "operator-certificate";

/**
 * Local operator tokens are told apart from demo tokens by more than their key: an issuer
 * and audience of their own, so neither kind verifies as the other even if a deployment
 * were to give both the same secret (config.ts refuses that).
 */
const LOCAL_OPERATOR_ISSUER = "meshwork-local-operator";
const LOCAL_OPERATOR_AUDIENCE = "meshwork-operator";

export interface OperatorVerifier {
  /** The operator a token speaks for; ConnectError UNAUTHENTICATED if it is not a valid token, PERMISSION_DENIED if it lacks the role. */
  verify(token: string): Promise<string>;
}

/** Verifies operators' bearer tokens as `config` says: a local secret of their own, or the identity provider's keys. */
export function createOperatorVerifier(config: OperatorAuthConfig): OperatorVerifier {
  const required = { requiredClaims: ["exp", "sub"] };
  let check: (token: string) => Promise<{ payload: JWTPayload }>;
  if (config.mode === "local") {
    const secret = new TextEncoder().encode(config.secret);
    check = (token) => jwtVerify(token, secret, { ...required, issuer: LOCAL_OPERATOR_ISSUER, audience: LOCAL_OPERATOR_AUDIENCE, algorithms: ["HS256"] });
  } else {
    const keys: JWTVerifyGetKey = createRemoteJWKSet(new URL(config.jwksUrl));
    // config.ts requires the issuer, and an audience apart from the customers'.
    check = (token) => jwtVerify(token, keys, { ...required, audience: config.audience, issuer: config.issuer, algorithms: JWKS_ALGORITHMS });
  }
  return {
    async verify(token) {
      let payload: JWTPayload;
      try {
        ({ payload } = await check(token));
      } catch {
        throw new ConnectError("invalid or expired operator token", Code.Unauthenticated);
      }
      let operator: string;
      try {
        operator = subjectOf(payload, config.maxTokenLifetimeSeconds);
      } catch (err) {
        throw new ConnectError(`operator ${(err as Error).message}`, Code.Unauthenticated);
      }
      const roles = payload[config.rolesClaim];
      if (!Array.isArray(roles) || !roles.includes(config.role)) throw new ConnectError(`the token's ${config.rolesClaim} claim does not hold "${config.role}"`, Code.PermissionDenied);
      return operator;
    },
  };
}

/**
 * A local operator token, as `npm start` prints in the console's URL: signed with the
 * operator secret (OPERATOR_LOCAL_SECRET), never the customers' one that IssueDemoToken
 * signs with, so no demo token ever carries the role.
 */
export function mintLocalOperatorToken(secret: string, operator: string, lifetimeSeconds: number, roles: { claim: string; role: string } = { claim: "roles", role: OPERATOR }): Promise<string> {
  if (!isSafePrincipalId(operator)) throw new Error(`operator ${PRINCIPAL_ID_RULE}`);
  return new SignJWT({ [roles.claim]: [roles.role] })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(operator)
    .setIssuer(LOCAL_OPERATOR_ISSUER)
    .setAudience(LOCAL_OPERATOR_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${lifetimeSeconds}s`)
    .sign(new TextEncoder().encode(secret));
}

/**
 * The operator listener's access control, in place of the mesh port's certificate check:
 * each method of `service` admits only what its (meshwork.v1.access) option names, and the
 * listener can admit an operator alone. Over TLS a verified client certificate names the
 * caller: the operator certificate is admitted (as whom OPERATOR_HEADER names, if that is a
 * safe id, else CERTIFICATE_OPERATOR), and any other workload's is PERMISSION_DENIED whatever
 * token it sends, since a token does not make a workload an operator. Without a certificate,
 * a bearer token with the role. A method whose contract names no operator admits nobody
 * here. Health and reflection stay open.
 */
export function createOperatorAuthInterceptor(verifier: OperatorVerifier, service: { typeName: string }): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName !== service.typeName) return next(req);
    if (!accessOf(req.method).callers.has(OPERATOR)) throw new ConnectError(`${req.method.name} admits no operator`, Code.PermissionDenied);
    const certified = req.contextValues.get(callerIdentityKey);
    if (certified === OPERATOR) {
      const named = (req.header.get(OPERATOR_HEADER) ?? "").trim();
      req.contextValues.set(operatorKey, isSafePrincipalId(named) ? named : CERTIFICATE_OPERATOR);
      return next(req);
    }
    if (certified !== undefined) throw new ConnectError(`${certified} may not call ${service.typeName}/${req.method.name}: only an operator may`, Code.PermissionDenied);
    const token = /^Bearer\s+(\S+)$/i.exec(req.header.get("authorization") ?? "")?.[1];
    if (!token) throw new ConnectError("missing bearer token: the operator listener needs an operator's token or, over TLS, the operator certificate", Code.Unauthenticated);
    req.contextValues.set(operatorKey, await verifier.verify(token));
    return next(req);
  };
}
