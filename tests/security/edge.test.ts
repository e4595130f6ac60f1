import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload } from "jose";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { cachingVerifications, createAuthenticator, type Authenticator } from "#gateway/src/auth.js";
import { loadConfig } from "#gateway/src/config.js";
import type { RunningServer } from "#platform/rpc-server/server.js";
import { bearer, startGateway, testAuthSecret } from "../support/gateway.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

const hour = 60 * 60;
const now = () => Math.floor(Date.now() / 1000);
/** The claims of a token the gateway accepts; each attack changes one of them. */
const good = (): JWTPayload => ({ sub: "ada", iat: now(), exp: now() + hour });
const without = (claim: string) => (payload: JWTPayload): JWTPayload => Object.fromEntries(Object.entries(payload).filter(([name]) => name !== claim));

/** The tokens issue 11's probe got accepted, and their neighbours, with why each is refused. */
const tooLong = /token lives longer than 86400 s/;
const badSubject = /token subject must be 1 to 64 ASCII letters/;
const centuries = 300 * 365 * 24 * hour;
const attacks: [string, (payload: JWTPayload) => JWTPayload, RegExp][] = [
  ["no exp", without("exp"), /missing required "exp" claim/],
  ["an exp centuries away", (p) => ({ ...p, exp: now() + centuries }), tooLong],
  ["an exp 25 h after its iat", (p) => ({ ...p, iat: now() - hour, exp: now() + 24 * hour }), tooLong],
  ["no iat and an exp 25 h from now", (p) => without("iat")({ ...p, exp: now() + 25 * hour }), tooLong],
  ["an iat far ahead, with an exp an hour after it", (p) => ({ ...p, iat: now() + centuries, exp: now() + centuries + hour }), tooLong],
  ["no sub", without("sub"), /missing required "sub" claim/],
  ["a zero-width space in sub", (p) => ({ ...p, sub: "a\u200Bda" }), badSubject],
  ["a Cyrillic look-alike in sub", (p) => ({ ...p, sub: "\u0430da" }), badSubject],
  ["a newline in sub", (p) => ({ ...p, sub: "ada\nlevel=info msg=forged" }), badSubject],
  ["a sub that is not a string", (p) => ({ ...p, sub: 42 as unknown as string }), badSubject],
];

describe("the gateway's public edge", () => {
  // tests/support/gateway.ts signs local tokens with this; the accepted control token below
  // proves the two still agree, so a refusal is never just a wrong key.
  const secret = new TextEncoder().encode(testAuthSecret);
  const sign = (payload: JWTPayload) => new SignJWT(payload).setProtectedHeader({ alg: "HS256" }).setIssuer("meshwork-local").setAudience("meshwork").sign(secret);
  let mesh: InProcessMesh;
  let gateway: RunningServer;
  let anonymous: ReturnType<typeof createClient<typeof StorefrontService>>;
  const ordersWith = (token: string) =>
    createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url, interceptors: [bearer(token)] }))
      .listMyOrders({})
      .then(
        (res) => ({ orders: res.orders.length }),
        (err: unknown) => ({ code: ConnectError.from(err).code }),
      );

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh);
    anonymous = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url }));
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
  });

  it("accepts a demo token, and a token with exp and a safe sub", async () => {
    const demo = await anonymous.issueDemoToken({ customerId: "ada" });
    expect(demo.expiresInSeconds).toBe(12n * 3600n);
    expect(await ordersWith(demo.token)).toEqual({ orders: 0 });
    expect(await ordersWith(await sign(good()))).toEqual({ orders: 0 });
    expect(await ordersWith(await sign(without("iat")({ ...good(), exp: now() + 23 * hour })))).toEqual({ orders: 0 });
  });

  it.each(attacks)("refuses a token with %s as Unauthenticated", async (_, attack) => {
    expect(await ordersWith(await sign(attack(good())))).toEqual({ code: Code.Unauthenticated });
  });

  it("issues no demo token for a look-alike customer id", async () => {
    const err = await anonymous.issueDemoToken({ customerId: "a\u200Bda" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/^customer_id: must be 1 to 64 ASCII letters/) });
  });

  it("reports the mesh's health without an internal address", async () => {
    const res = await fetch(`${gateway.url}/shop.gateway.v1.StorefrontService/GetMeshStatus`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    const text = await res.text();
    expect(res.status).toBe(200);
    const status = JSON.parse(text) as { services: { name: string; status: string }[] };
    expect(status.services.map((s) => [s.name, s.status])).toEqual([
      ["order", "SERVING"],
      ["inventory", "SERVING"],
      ["payment", "SERVING"],
      ["notification", "SERVING"],
      ["catalog", "SERVING"],
      ["oldshop", "SERVING"],
    ]);
    expect(text).not.toContain("127.0.0.1");
    expect(text).not.toContain("http://");
    for (const url of [mesh.order.url, mesh.inventory.url, mesh.payment.url, mesh.notification.url]) expect(text).not.toContain(`:${new URL(url).port}`);
  });
});

describe("jwks mode", () => {
  const provider = { issuer: "https://idp.example", audience: "meshwork" };
  let idp: Server;
  let jwksUrl: string;
  let sign: (payload: JWTPayload) => Promise<string>;

  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" }] });
    idp = createServer((_, res) => res.writeHead(200, { "content-type": "application/json" }).end(jwks));
    await new Promise<void>((resolve) => idp.listen(0, "127.0.0.1", resolve));
    jwksUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks.json`;
    sign = (payload) => new SignJWT(payload).setProtectedHeader({ alg: "ES256", kid: "k1" }).setIssuer(provider.issuer).setAudience(provider.audience).sign(privateKey);
  });
  afterAll(() => new Promise<void>((resolve) => (idp ? idp.close(() => resolve()) : resolve())));

  it("accepts the provider's token with exp and a safe sub", async () => {
    expect(await createAuthenticator({ mode: "jwks", jwksUrl, ...provider }).verify(await sign(good()))).toBe("ada");
  });

  it.each(attacks)("refuses a token with %s", async (_, attack, reason) => {
    await expect(createAuthenticator({ mode: "jwks", jwksUrl, ...provider }).verify(await sign(attack(good())))).rejects.toThrow(reason);
  });

  it("holds tokens to a configured lifetime", async () => {
    const strict = createAuthenticator({ mode: "jwks", jwksUrl, ...provider, maxTokenLifetimeSeconds: 600 });
    expect(await strict.verify(await sign({ ...good(), exp: now() + 300 }))).toBe("ada");
    await expect(strict.verify(await sign(good()))).rejects.toThrow(/token lives longer than 600 s/);
  });
});

describe("local demo tokens", () => {
  it("live no longer than the configured lifetime, so the gateway takes its own tokens", async () => {
    const local = createAuthenticator({ mode: "local", secret: "y".repeat(32), maxTokenLifetimeSeconds: 600 });
    const { token, expiresInSeconds } = await local.issue!("ada");
    expect(expiresInSeconds).toBe(600);
    expect(await local.verify(token)).toBe("ada");
  });
});

describe("remembered verifications", () => {
  const local = () => createAuthenticator({ mode: "local", secret: "y".repeat(32), maxTokenLifetimeSeconds: 600 });
  /** Counts the signature checks that reach the real authenticator. */
  const counting = (inner: Authenticator) => {
    const counted = { checks: 0, ...inner, verify: (token: string) => (counted.checks++, inner.verify(token)) };
    return counted;
  };

  it("check a token's signature once while it is fresh, and again after a minute", async () => {
    const inner = counting(local());
    let clock = Date.now();
    const cached = cachingVerifications(inner, () => clock);
    const { token } = await inner.issue!("ada");
    expect([await cached.verify(token), await cached.verify(token), await cached.verify(token)]).toEqual(["ada", "ada", "ada"]);
    expect(inner.checks).toBe(1);
    clock += 61_000;
    expect(await cached.verify(token)).toBe("ada");
    expect(inner.checks).toBe(2);
  });

  it("never outlive the token's exp, and never remember a refusal", async () => {
    const inner = counting(local());
    let clock = Date.now();
    const cached = cachingVerifications(inner, () => clock);
    const { token } = await inner.issue!("ada");
    await cached.verify(token);
    clock += 50_000; // fresh by the cache's minute, but within ten seconds of exp below
    const { token: shortLived } = await createAuthenticator({ mode: "local", secret: "y".repeat(32), maxTokenLifetimeSeconds: 10 }).issue!("ada");
    await cached.verify(shortLived);
    clock += 11_000; // past the short token's exp, though less than a minute since it was checked
    await cached.verify(shortLived);
    expect(inner.checks).toBe(3);
    await expect(cached.verify(`${token}x`)).rejects.toThrow();
    await expect(cached.verify(`${token}x`)).rejects.toThrow();
    expect(inner.checks).toBe(5);
  });
});

describe("the gateway's auth configuration", () => {
  /** What every gateway is given besides its auth settings: its NATS user and certificate. */
  const mesh = { NATS_URL: "nats://gateway:pw@127.0.0.1:54222", TLS_CERT_FILE: "gateway.crt", TLS_KEY_FILE: "gateway.key", TLS_CA_FILE: "ca.crt" };
  const local = (env: Record<string, string>) => () => loadConfig({ ...mesh, AUTH_MODE: "local", ...env }).auth;
  const ownSecret = "x".repeat(32);

  it("serves the built-in secret on loopback only", () => {
    for (const host of ["127.0.0.1", "::1", "localhost"]) expect(local({ HOST: host })()).toMatchObject({ mode: "local", secret: expect.any(String) });
    expect(local({})).not.toThrow(); // HOST defaults to 127.0.0.1
    expect(local({ HOST: "0.0.0.0" })).toThrow(/AUTH_LOCAL_SECRET/);
    expect(local({ HOST: "::" })).toThrow(/AUTH_LOCAL_SECRET/);
  });

  it("refuses the built-in secret set by hand off loopback", () => {
    const builtIn = (local({ HOST: "127.0.0.1" })() as { secret: string }).secret;
    expect(local({ HOST: "0.0.0.0", AUTH_LOCAL_SECRET: builtIn })).toThrow(/AUTH_LOCAL_SECRET/);
  });

  it("takes a secret of at least 32 characters anywhere, and nothing shorter", () => {
    expect(local({ HOST: "0.0.0.0", AUTH_LOCAL_SECRET: ownSecret })()).toEqual({ mode: "local", secret: ownSecret, maxTokenLifetimeSeconds: 24 * 3600 });
    expect(local({ HOST: "0.0.0.0", AUTH_LOCAL_SECRET: ownSecret.slice(1) })).toThrow(/AUTH_LOCAL_SECRET must be at least 32 characters/);
    expect(local({ HOST: "127.0.0.1", AUTH_LOCAL_SECRET: "short" })).toThrow(/AUTH_LOCAL_SECRET must be at least 32 characters/);
  });

  it("reads AUTH_MAX_TOKEN_LIFETIME_SECONDS, 24 h when unset", () => {
    const jwks = { ...mesh, AUTH_MODE: "jwks", AUTH_JWKS_URL: "http://idp.example/jwks.json" };
    expect(loadConfig(jwks).auth.maxTokenLifetimeSeconds).toBe(24 * 3600);
    expect(loadConfig({ ...jwks, AUTH_MAX_TOKEN_LIFETIME_SECONDS: "600" }).auth.maxTokenLifetimeSeconds).toBe(600);
    expect(() => loadConfig({ ...jwks, AUTH_MAX_TOKEN_LIFETIME_SECONDS: "0" })).toThrow(/AUTH_MAX_TOKEN_LIFETIME_SECONDS must be an integer/);
  });

  it("still has no default AUTH_MODE", () => {
    expect(() => loadConfig(mesh)).toThrow(/AUTH_MODE is required/);
  });
});
