import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { OperatorService } from "#gen/shop/gateway/v1/operator_service_pb.js";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { SignJWT } from "jose";
import { mintLocalOperatorToken } from "#gateway/src/operator/operator-auth.js";
import { bearer, startGatewayWithOperator, testAuthSecret, testOperatorSecret, testOperatorToken } from "../support/gateway.js";
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
