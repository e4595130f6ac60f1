import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { OperatorService } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { OrderService, SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { startMeshPki, type MeshPki } from "#tools/mesh/mesh-pki.js";
import { SignJWT } from "jose";
import { mintLocalOperatorToken } from "#gateway/src/operator/operator-auth.js";
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
      expect(await actorOf(named)).toBe("hopper (operator)@127.0.0.1");
      const unsafe = await settled();
      expect(await failure(operatorClient("operator", { header: { "x-operator": "hop per" } }).compensateSaga({ orderId: unsafe, reason: "test" }))).toMatchObject({ code: Code.FailedPrecondition });
      expect(await actorOf(unsafe)).toBe("operator-certificate (operator)@127.0.0.1");
    } finally {
      await sql.end();
    }
  });
});
