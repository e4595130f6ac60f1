import { X509Certificate, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { OperatorService } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderService, SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { InventoryService } from "#gen/shop/inventory/v1/inventory_service_pb.js";
import { SagaAdminService } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { startMeshPki, type MeshPki } from "#tools/mesh/mesh-pki.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload } from "jose";
import { createOperatorVerifier, mintLocalOperatorToken } from "#gateway/src/operator/operator-auth.js";
import { loadConfig } from "#gateway/src/config.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { bearer, startGateway, startGatewayWithOperator, testAuthSecret, testOperatorConfig, testOperatorSecret, testOperatorToken } from "../support/gateway.js";
import { meshTransport } from "../support/mesh-clients.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

/**
 * The operator listener admits operators alone: a token with the operator role, signed with
 * the operator secret. No demo token, however it was obtained, gets in; and the public port
 * serves none of OperatorService.
 */
describe("the operator listener", () => {
  let mesh: InProcessMesh;
  let gateway: Awaited<ReturnType<typeof startGatewayWithOperator>>;
  const operatorClient = (token?: string) => createClient(OperatorService, createConnectTransport({ baseUrl: gateway.operator.url, httpVersion: "1.1", interceptors: token ? [bearer(token)] : [] }));
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => ConnectError.from(e));

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGatewayWithOperator(mesh);
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
  });

  it("listens on loopback, on a port of its own", () => {
    expect(new URL(gateway.operator.url).hostname).toBe("127.0.0.1");
    expect(gateway.operator.port).not.toBe(gateway.port);
  });

  it("refuses a call without a token as UNAUTHENTICATED", async () => {
    expect(await failure(operatorClient().getStats({}))).toMatchObject({ code: Code.Unauthenticated });
    expect(await failure(operatorClient().listSagas({}))).toMatchObject({ code: Code.Unauthenticated });
  });

  it("refuses every demo token: IssueDemoToken's are signed with the customers' secret", async () => {
    const storefront = createClient(StorefrontService, createGrpcTransport({ baseUrl: gateway.url }));
    // Whatever a customer asks for, even to be called "operator".
    for (const customerId of ["ada", "operator", "local-operator"]) {
      const { token } = await storefront.issueDemoToken({ customerId });
      const refused = await failure(operatorClient(token).getStats({}));
      expect(refused?.code, customerId).toBe(Code.Unauthenticated);
    }
    // Nor a token signed with the customers' secret that claims the role outright.
    const forged = await new SignJWT({ roles: ["operator"] }).setProtectedHeader({ alg: "HS256" }).setSubject("mallory").setIssuer("meshwork-local-operator").setAudience("meshwork-operator").setIssuedAt().setExpirationTime("1h").sign(new TextEncoder().encode(testAuthSecret));
    expect(await failure(operatorClient(forged).getStats({}))).toMatchObject({ code: Code.Unauthenticated });
  });

  it("refuses a valid operator-signed token without the role as PERMISSION_DENIED", async () => {
    const noRole = await mintLocalOperatorToken(testOperatorSecret, "intern", 600, { claim: "roles", role: "viewer" });
    expect(await failure(operatorClient(noRole).getStats({}))).toMatchObject({ code: Code.PermissionDenied, rawMessage: 'the token\'s roles claim does not hold "operator"' });
  });

  it("refuses an operator token that lives too long or has expired", async () => {
    const secret = new TextEncoder().encode(testOperatorSecret);
    const sign = (exp: number) => new SignJWT({ roles: ["operator"] }).setProtectedHeader({ alg: "HS256" }).setSubject("ops").setIssuer("meshwork-local-operator").setAudience("meshwork-operator").setExpirationTime(exp).sign(secret);
    const now = Math.floor(Date.now() / 1000);
    expect(await failure(operatorClient(await sign(now + 30 * 24 * 3600)).getStats({}))).toMatchObject({ code: Code.Unauthenticated });
    expect(await failure(operatorClient(await sign(now - 60)).getStats({}))).toMatchObject({ code: Code.Unauthenticated });
  });

  it("answers an operator", async () => {
    const ops = operatorClient(await testOperatorToken());
    expect(await failure(ops.getStats({}))).toBeUndefined();
    expect(await failure(ops.listTraces({}))).toBeUndefined();
    // And health stays open, for probes.
    const health = await fetch(`${gateway.operator.url}/grpc.health.v1.Health/Check`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(await health.json()).toEqual({ status: "SERVING" });
  });

  it("is not on the public port: OperatorService there is UNIMPLEMENTED, with a token or without", async () => {
    const onPublic = createClient(OperatorService, createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", interceptors: [bearer(await testOperatorToken())] }));
    expect(await failure(onPublic.getStats({}))).toMatchObject({ code: Code.Unimplemented });
    const page = await fetch(`${gateway.url}/operator.js`);
    expect(page.status).toBe(404);
  });

  it("serves the operator page and its script, and no storefront page", async () => {
    const page = await fetch(`${gateway.operator.url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("/operator.js");
    expect((await fetch(`${gateway.operator.url}/operator.js`)).status).toBe(200);
    expect((await fetch(`${gateway.operator.url}/console.js`)).status).toBe(404);
  });
});

/**
 * OPERATOR_TLS=on, as deployed: the listener serves the gateway's mesh certificate and asks
 * for a client certificate from the mesh CA. The operator's is admitted without a token;
 * another workload's is refused whatever it sends; without one, the token decides as above.
 */
describe("the operator listener over TLS", () => {
  let mesh: InProcessMesh;
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  let operatorUrl: string;
  /** Another CA's PKI, whose "operator" certificate the mesh CA did not issue. */
  let foreign: MeshPki;
  let foreignDir: string;
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => ConnectError.from(e));
  /** OperatorService over TLS, checking that the listener is the gateway, presenting `as`'s certificate from `pki` (or none). */
  const operatorClient = (as: string | undefined, options: { token?: string; header?: Record<string, string>; pki?: MeshPki } = {}) =>
    createClient(
      OperatorService,
      meshTransport(operatorUrl, options.pki ?? mesh.pki, {
        ...(as ? { as } : {}),
        peer: "gateway",
        protocol: "connect",
        interceptors: [
          ...(options.token ? [bearer(options.token)] : []),
          (next) => (req) => {
            for (const [name, value] of Object.entries(options.header ?? {})) req.header.set(name, value);
            return next(req);
          },
        ],
      }),
    );

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    gateway = await startGateway(mesh, { operator: { ...testOperatorConfig(mesh), serveTls: true } });
    operatorUrl = gateway.operator!.url;
    foreignDir = mkdtempSync(join(tmpdir(), "meshwork-foreign-pki-"));
    foreign = await startMeshPki(foreignDir, { lifetimeMs: 60 * 60_000 });
  });
  afterAll(async () => {
    await gateway?.close();
    await mesh?.close();
    if (foreignDir) rmSync(foreignDir, { recursive: true, force: true });
  });

  it("serves https on loopback, with the gateway's mesh certificate", async () => {
    expect(new URL(operatorUrl)).toMatchObject({ protocol: "https:", hostname: "127.0.0.1" });
    // meshTransport checks the server is spiffe://meshwork/gateway: the call getting an answer proves it.
    expect(await failure(operatorClient(undefined).getStats({}))).toMatchObject({ code: Code.Unauthenticated });
  });

  it("admits the operator certificate without a token", async () => {
    expect(await failure(operatorClient("operator").getStats({}))).toBeUndefined();
    expect(await failure(operatorClient("operator").listSagas({}))).toBeUndefined();
  });

  it("refuses another service's mesh certificate as PERMISSION_DENIED, even with an operator's token", async () => {
    expect(await failure(operatorClient("inventory").getStats({}))).toMatchObject({ code: Code.PermissionDenied, rawMessage: "inventory may not call shop.gateway.v1.OperatorService/GetStats: only an operator may" });
    // The console's own certificate (its backend's) is no operator's either.
    expect(await failure(operatorClient(CONSOLE).listSagas({}))).toMatchObject({ code: Code.PermissionDenied, rawMessage: "console may not call shop.gateway.v1.OperatorService/ListSagas: only an operator may" });
    expect(await failure(operatorClient("gateway", { token: await testOperatorToken() }).listSagas({}))).toMatchObject({ code: Code.PermissionDenied });
  });

  it("refuses a call with no certificate and no token as UNAUTHENTICATED, and takes an operator's token without a certificate", async () => {
    expect(await failure(operatorClient(undefined).listSagas({}))).toMatchObject({ code: Code.Unauthenticated, rawMessage: expect.stringContaining("operator certificate") });
    expect(await failure(operatorClient(undefined, { token: await testOperatorToken() }).getStats({}))).toBeUndefined();
  });

  it("believes no certificate another CA issued, whatever identity it names", async () => {
    // The client still trusts the mesh CA for the server; only its own certificate is foreign.
    const transport = meshTransport(operatorUrl, mesh.pki, { peer: "gateway", protocol: "connect", nodeOptions: { cert: readFileSync(foreign.operator.certFile), key: readFileSync(foreign.operator.keyFile) } });
    expect(await failure(createClient(OperatorService, transport).getStats({}))).toMatchObject({ code: Code.Unauthenticated });
  });

  it("audits a certificate's actions as the operator x-operator names, or as operator-certificate", async () => {
    const sql = connect(mesh.databaseUrl);
    try {
      const orders = mesh.client(OrderService, "order");
      const settled = async () => {
        const { order } = await orders.createOrder({ customerId: "tls-customer", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
        await eventually(async () => expect((await orders.getOrder({ orderId: order!.id })).saga?.state).toBe(SagaState.COMPLETED));
        return order!.id;
      };
      const actorOf = async (orderId: string) => (await sql`select actor from orders.saga_audit where order_id = ${orderId} and action = 'compensate'`)[0]?.["actor"];
      // A finished saga cannot be compensated: refused, and audited all the same.
      const named = await settled();
      expect(await failure(operatorClient("operator", { header: { "x-operator": "hopper" } }).compensateSaga({ orderId: named, reason: "test" }))).toMatchObject({ code: Code.FailedPrecondition });
      expect(await actorOf(named)).toBe("hopper (console)@127.0.0.1");
      const unsafe = await settled();
      expect(await failure(operatorClient("operator", { header: { "x-operator": "hop per" } }).compensateSaga({ orderId: unsafe, reason: "test" }))).toMatchObject({ code: Code.FailedPrecondition });
      expect(await actorOf(unsafe)).toBe("operator-certificate (console)@127.0.0.1");
    } finally {
      await sql.end();
    }
  });
});

/**
 * The console's backend calls order as spiffe://meshwork/console, which the saga admin RPCs
 * admit and nothing else does: holding the gateway gets an attacker no AdjustStock, no
 * other customer's order, no other service's RPC.
 */
describe("the console's certificate on the mesh", () => {
  let mesh: InProcessMesh;
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => ConnectError.from(e));
  const asConsole = <S extends typeof SagaAdminService | typeof OrderService | typeof InventoryService>(service: S, url: string, peer: string) => createClient(service, meshTransport(url, mesh.pki, { as: CONSOLE, peer }));

  beforeAll(async () => {
    mesh = await startInProcessMesh();
  });
  afterAll(async () => {
    await mesh?.close();
  });

  it("is a client-only certificate of its own", () => {
    const certificate = new X509Certificate(readFileSync(mesh.pki.console.certFile));
    expect(certificate.subjectAltName).toContain("URI:spiffe://meshwork/console");
    expect(certificate.subjectAltName).not.toContain("spiffe://meshwork/operator");
    expect(statSync(mesh.pki.console.keyFile).mode & 0o777).toBe(0o600);
  });

  it("is admitted to the saga admin RPCs, and refused every operator RPC besides", async () => {
    expect(await failure(asConsole(SagaAdminService, mesh.order.url, "order").listSagas({}))).toBeUndefined();
    expect(await failure(asConsole(OrderService, mesh.order.url, "order").getOrder({ orderId: randomUUID() }))).toMatchObject({ code: Code.PermissionDenied, rawMessage: "console may not call shop.order.v1.OrderService/GetOrder" });
    expect(await failure(asConsole(InventoryService, mesh.inventory.url, "inventory").adjustStock({ sku: "MW-MUG-001", delta: 1000 }))).toMatchObject({ code: Code.PermissionDenied, rawMessage: "console may not call shop.inventory.v1.InventoryService/AdjustStock" });
  });
});

/** Operators' tokens from an identity provider: its issuer, the operators' audience, an asymmetric signature. */
describe("operators' tokens in jwks mode", () => {
  const issuer = "https://idp.example";
  const publishedSecret = "a-key-the-provider-publishes-in-its-jwks!";
  let idp: Server;
  let jwksUrl: string;
  let sign: (payload: JWTPayload, options?: { issuer?: string; audience?: string }) => Promise<string>;
  const now = () => Math.floor(Date.now() / 1000);
  const operator = (): JWTPayload => ({ sub: "grace", roles: ["operator"], iat: now(), exp: now() + 3600 });
  const verifier = () => createOperatorVerifier({ mode: "jwks", jwksUrl, issuer, audience: "meshwork-operator", rolesClaim: "roles", role: "operator", maxTokenLifetimeSeconds: 12 * 3600 });
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => ConnectError.from(e));

  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    // A provider that also publishes a symmetric key, which anyone could sign HS256 with: the
    // verifier's pinned asymmetric algorithms refuse such a token (as jose's key set does too).
    const keys = [{ ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" }, { kty: "oct", kid: "k2", k: Buffer.from(publishedSecret).toString("base64url") }];
    idp = createServer((_, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys })));
    await new Promise<void>((resolve) => idp.listen(0, "127.0.0.1", resolve));
    jwksUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks.json`;
    sign = (payload, options = {}) =>
      new SignJWT(payload)
        .setProtectedHeader({ alg: "ES256", kid: "k1" })
        .setIssuer(options.issuer ?? issuer)
        .setAudience(options.audience ?? "meshwork-operator")
        .sign(privateKey);
  });
  afterAll(() => new Promise<void>((resolve) => (idp ? idp.close(() => resolve()) : resolve())));

  it("accepts the provider's operator token for the operators' audience", async () => {
    expect(await verifier().verify(await sign(operator()))).toBe("grace");
  });

  it("refuses a customer's token, another issuer's, and one signed with a published symmetric key", async () => {
    expect(await failure(verifier().verify(await sign(operator(), { audience: "meshwork" })))).toMatchObject({ code: Code.Unauthenticated });
    expect(await failure(verifier().verify(await sign(operator(), { issuer: "https://other.example" })))).toMatchObject({ code: Code.Unauthenticated });
    const hs256 = await new SignJWT(operator()).setProtectedHeader({ alg: "HS256", kid: "k2" }).setIssuer(issuer).setAudience("meshwork-operator").sign(new TextEncoder().encode(publishedSecret));
    expect(await failure(verifier().verify(hs256))).toMatchObject({ code: Code.Unauthenticated });
  });

  it("holds operators' tokens to their lifetime, with the customers' rule", async () => {
    expect(await failure(verifier().verify(await sign({ ...operator(), exp: now() + 13 * 3600 })))).toMatchObject({ code: Code.Unauthenticated, rawMessage: "operator token lives longer than 43200 s" });
    expect(await failure(verifier().verify(await sign({ ...operator(), sub: "gr ace" })))).toMatchObject({ code: Code.Unauthenticated, rawMessage: expect.stringMatching(/^operator token subject /) });
  });
});

describe("the operator listener's configuration", () => {
  const mesh = { NATS_URL: "nats://gateway:pw@127.0.0.1:54222", TLS_CERT_FILE: "gateway.crt", TLS_KEY_FILE: "gateway.key", TLS_CA_FILE: "ca.crt", CONSOLE_CERT_FILE: "console.crt", CONSOLE_KEY_FILE: "console.key" };
  const jwks = { ...mesh, AUTH_MODE: "jwks", AUTH_JWKS_URL: "http://idp.example/jwks.json" };
  const local = { ...mesh, AUTH_MODE: "local", OPERATOR_LOCAL_SECRET: "o".repeat(32) };

  it("acts with the console's certificate and NATS user, named as such", () => {
    expect(loadConfig({ ...local, CONSOLE_NATS_URL: "nats://console:pw@127.0.0.1:54222" }).operator).toMatchObject({ tls: { certFile: "console.crt", keyFile: "console.key" }, natsUrl: "nats://console:pw@127.0.0.1:54222" });
    const { CONSOLE_CERT_FILE: _cert, CONSOLE_KEY_FILE: _key, ...withoutConsole } = local;
    expect(() => loadConfig({ ...withoutConsole, OPERATOR_PORT: "8090" })).toThrow(/CONSOLE_CERT_FILE and CONSOLE_KEY_FILE/);
  });

  it("in jwks mode wants an issuer, and an audience of the operators' own", () => {
    expect(() => loadConfig(jwks)).toThrow(/OPERATOR_ISSUER \(or AUTH_ISSUER\) must be set/);
    expect(loadConfig({ ...jwks, AUTH_ISSUER: "https://idp.example" }).operator?.auth).toMatchObject({ issuer: "https://idp.example", audience: "meshwork-operator" });
    expect(loadConfig({ ...jwks, OPERATOR_ISSUER: "https://ops.example", OPERATOR_AUDIENCE: "ops" }).operator?.auth).toMatchObject({ issuer: "https://ops.example", audience: "ops" });
    expect(() => loadConfig({ ...jwks, AUTH_ISSUER: "https://idp.example", OPERATOR_AUDIENCE: "meshwork" })).toThrow(/OPERATOR_AUDIENCE must differ from AUTH_AUDIENCE/);
  });

  it("refuses a host off loopback without TLS, where bearer tokens would cross the network in clear", () => {
    expect(() => loadConfig({ ...local, OPERATOR_HOST: "0.0.0.0" })).toThrow(/OPERATOR_HOST "0\.0\.0\.0" is not loopback/);
    expect(loadConfig({ ...local, OPERATOR_HOST: "0.0.0.0", OPERATOR_TLS: "on" }).operator).toMatchObject({ host: "0.0.0.0", serveTls: true });
    expect(loadConfig({ ...local, OPERATOR_HOST: "::1" }).operator).toMatchObject({ host: "::1", serveTls: false });
  });
});
