import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { OrderService, SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { SagaAdminService } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import { writeMeshState } from "#tools/mesh/mesh-state.js";
import { sagaCli } from "#tools/ops/saga.js";
import { connect } from "../support/databases.js";
import { eventually } from "../support/eventually.js";
import { meshTransport } from "../support/mesh-clients.js";
import { startInProcessMesh, type InProcessMesh } from "../support/services.js";

const operator = { headers: { "x-operator": "ada" } };

describe("saga admin service (order's mesh port, operators only)", () => {
  let mesh: InProcessMesh;
  let sql: ReturnType<typeof connect>;
  /** Holds the mesh state file the CLI finds the mesh by, as `npm start` writes .data/mesh.json. */
  let stateDir: string;
  let cliEnv: { MESH_STATE_FILE: string };
  const orders = () => mesh.client(OrderService, "order");
  // The contract admits only operators, so this calls as the operator.
  const sagas = () => mesh.client(SagaAdminService, "order");
  const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => ConnectError.from(e));

  /** Places an order and waits for its saga to finish. */
  async function settledOrder(paymentToken: string) {
    const { order } = await orders().createOrder({ customerId: "ops", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken, requestId: randomUUID() });
    const id = order!.id;
    await eventually(async () => expect([SagaState.COMPLETED, SagaState.COMPENSATED]).toContain((await orders().getOrder({ orderId: id })).saga?.state));
    return id;
  }

  beforeAll(async () => {
    mesh = await startInProcessMesh();
    sql = connect(mesh.databaseUrl);
    stateDir = mkdtempSync(join(tmpdir(), "meshwork-saga-cli-"));
    const operatorNats = new URL(mesh.nats.urlFor("operator"));
    const operatorNatsPasswordFile = join(stateDir, "operator-nats-password");
    writeFileSync(operatorNatsPasswordFile, decodeURIComponent(operatorNats.password), { mode: 0o600 });
    const servers = { order: mesh.order, inventory: mesh.inventory, payment: mesh.payment, notification: mesh.notification };
    cliEnv = { MESH_STATE_FILE: join(stateDir, "mesh.json") };
    writeMeshState(cliEnv.MESH_STATE_FILE, {
      services: Object.fromEntries(Object.entries(servers).map(([name, server]) => [name, { url: server.url, opsUrl: server.ops.url }])),
      natsUrl: `nats://${operatorNats.host}`,
      operator: mesh.pki.operator,
      operatorNatsPasswordFile,
    });
  });
  afterAll(async () => {
    await sql?.end();
    await mesh?.close();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it("is served on order's mesh port to operators alone: another identity gets PERMISSION_DENIED, no certificate UNAUTHENTICATED", async () => {
    const as = (identity: string | undefined) =>
      createClient(SagaAdminService, meshTransport(mesh.order.url, mesh.pki, { ...(identity ? { as: identity } : {}), peer: "order" }));
    for (const identity of ["gateway", "payment", "inventory", "notification", "order"]) {
      expect(await failure(as(identity).listSagas({})), identity).toMatchObject({ code: Code.PermissionDenied });
    }
    expect(await failure(as(undefined).listSagas({}))).toMatchObject({ code: Code.Unauthenticated });
    expect(await failure(as(undefined).retrySaga({ orderId: randomUUID() }, operator))).toMatchObject({ code: Code.Unauthenticated });
    expect(await failure(as("operator").listSagas({}))).toBeUndefined();
    // Refused before the handler, so none of these left an audit row.
    const [row] = await sql`select count(*)::int as n from orders.saga_audit`;
    expect(row?.["n"]).toBe(0);
  });

  it("shows and lists sagas with the payment token redacted, a bounded page at a time", async () => {
    const first = await settledOrder("tok_visa");
    const second = await settledOrder("tok_visa");
    const { saga } = await sagas().getSaga({ orderId: first });
    expect(saga).toMatchObject({ orderId: first, type: "place-order", state: SagaState.COMPLETED, currentStep: "commit-reservation", attempts: 1 });
    expect(saga!.steps.map((s) => `${s.name}:${s.state}`)).toEqual(["reserve-stock:succeeded", "charge:succeeded", "confirm-order:succeeded", "commit-reservation:succeeded"]);
    expect(JSON.parse(saga!.payloadJson)).toMatchObject({ orderId: first, paymentToken: "[redacted]" });
    expect(saga!.payloadJson).not.toContain("tok_visa");

    const page1 = await sagas().listSagas({ state: SagaState.COMPLETED, pageSize: 1 });
    expect(page1.sagas).toHaveLength(1);
    expect(page1.nextPageToken).not.toBe("");
    const page2 = await sagas().listSagas({ state: SagaState.COMPLETED, pageSize: 1, pageToken: page1.nextPageToken });
    expect([page1.sagas[0]!.orderId, page2.sagas[0]!.orderId]).toEqual([first, second]);
    expect(page2.sagas[0]!.payloadJson).toContain("[redacted]");
    expect((await sagas().listSagas({ state: SagaState.PARKED })).sagas.map((s) => s.orderId)).not.toContain(first);
  });

  it("answers NOT_FOUND, FAILED_PRECONDITION and INVALID_ARGUMENT naming the field, and audits each action", async () => {
    const done = await settledOrder("tok_visa");
    const unknown = randomUUID();
    expect(await failure(sagas().getSaga({ orderId: unknown }))).toMatchObject({ code: Code.NotFound });
    expect(await failure(sagas().retrySaga({ orderId: unknown }, operator))).toMatchObject({ code: Code.NotFound });
    expect(await failure(sagas().getSaga({ orderId: "nope" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "order_id: must be a UUID" });
    expect(await failure(sagas().listSagas({ pageSize: -1 }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "page_size: must not be negative" });
    expect(await failure(sagas().listSagas({ pageToken: "garbage" }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/^page_token: /) });
    expect(await failure(sagas().listSagas({ state: 42 as SagaState }))).toMatchObject({ code: Code.InvalidArgument, rawMessage: "state: unknown saga state 42" });
    expect(await failure(sagas().retrySaga({ orderId: done }, operator))).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage: `cannot retry the saga of order ${done}: saga is completed; only a parked saga can be retried`,
    });
    expect(await failure(sagas().compensateSaga({ orderId: done }, operator))).toMatchObject({ code: Code.FailedPrecondition });

    const audit = await sql`select actor, action, outcome, detail from orders.saga_audit where order_id in (${done}, ${unknown}) order by at, action`;
    expect(audit.map((r) => `${r["actor"]} ${r["action"]} ${r["outcome"]}`)).toEqual([
      "ada (operator)@127.0.0.1 retry not_found",
      "ada (operator)@127.0.0.1 retry refused",
      "ada (operator)@127.0.0.1 compensate refused",
    ]);
    expect(audit[2]!["detail"]).toBe("saga is completed; there is nothing left to compensate");
  });

  it("retries a saga parked past the point of no return until it completes", async () => {
    const id = await settledOrder("tok_visa");
    // What a definitive failure of the last step leaves: the saga parked, the step failed.
    await sql`update orders.sagas set state = 'parked', last_error = 'commit-reservation: [failed_precondition] no' where aggregate_id = ${id}`;
    await sql`update orders.saga_steps set state = 'failed' where name = 'commit-reservation' and saga_id = (select id from orders.sagas where aggregate_id = ${id})`;
    expect(await failure(sagas().compensateSaga({ orderId: id }, operator))).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringContaining("past the point of no return") });

    const { saga } = await sagas().retrySaga({ orderId: id }, operator);
    expect(saga?.state).toBe(SagaState.RUNNING);
    await eventually(async () => expect((await sagas().getSaga({ orderId: id })).saga?.state).toBe(SagaState.COMPLETED));
    const [row] = await sql`select actor, outcome, detail from orders.saga_audit where order_id = ${id} and action = 'retry'`;
    expect(row).toEqual({ actor: "ada (operator)@127.0.0.1", outcome: "accepted", detail: "running" });
  });

  it("forces the compensation of a saga parked while compensating, through the CLI", async () => {
    const id = await settledOrder("tok_decline");
    await sql`update orders.sagas set state = 'parked' where aggregate_id = ${id}`;
    await sql`update orders.saga_steps set state = 'succeeded' where name = 'reserve-stock' and saga_id = (select id from orders.sagas where aggregate_id = ${id})`;
    const lines: string[] = [];
    const io = { out: (line: string) => lines.push(line), err: (line: string) => lines.push(line) };
    const env = cliEnv;

    expect(await sagaCli(["list", "--state", "parked"], env, io)).toBe(0);
    expect(lines.join("\n")).toContain(id);
    expect(await sagaCli(["compensate", id, "--operator", "grace", "--reason", "stuck"], env, io)).toBe(0);
    expect(lines.at(-1)).toBe(`compensation accepted: the saga of order ${id} is compensating`);
    await eventually(async () => expect((await sagas().getSaga({ orderId: id })).saga?.state).toBe(SagaState.COMPENSATED));

    lines.length = 0;
    expect(await sagaCli(["show", id], env, io)).toBe(0);
    const shown = lines.join("\n");
    expect(JSON.parse(shown)).toMatchObject({ orderId: id, state: "SAGA_STATE_COMPENSATED" });
    expect(shown).toContain("[redacted]");
    expect(shown).not.toContain("tok_decline");
    expect(await sagaCli(["retry", randomUUID()], env, io)).toBe(1);
    expect(lines.at(-1)).toMatch(/^saga: NotFound: no saga for order /);
    expect(await sagaCli(["retry"], env, io)).toBe(2);
    const [row] = await sql`select actor, outcome from orders.saga_audit where order_id = ${id} and action = 'compensate'`;
    expect(row).toEqual({ actor: "grace (operator)@127.0.0.1", outcome: "accepted" });
  });

  // Last: it takes payment away for good.
  it("GetOrder shows a compensation retrying behind a participant that is away: step, last error, attempts, next attempt", async () => {
    await mesh.payment.close();
    const { order } = await orders().createOrder({ customerId: "ops", items: [{ sku: "MW-MUG-001", quantity: 1 }], paymentToken: "tok_visa", requestId: randomUUID() });
    // The charge gives up after its attempts and compensates; the refund then waits for payment.
    const progress = await eventually(async () => {
      const { saga } = await orders().getOrder({ orderId: order!.id });
      expect(saga).toMatchObject({ state: SagaState.COMPENSATING, currentStep: "charge (compensation)" });
      expect(saga!.attempts).toBeGreaterThanOrEqual(3);
      expect(saga!.nextAttemptTime).toBeDefined();
      return saga!;
    });
    expect(progress.lastError).toMatch(/^compensating charge: \[unavailable\]/);
    expect(timestampDate(progress.nextAttemptTime!).getTime()).toBeGreaterThan(Date.now() - 1_000);
    expect(progress.steps.find((s) => s.name === "charge")?.lastError).toMatch(/^compensating charge: \[unavailable\]/);
  });
});
