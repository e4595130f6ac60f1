import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { PaymentService } from "#gen/shop/payment/v1/payment_service_pb.js";
import { createServiceClient } from "#platform/rpc-client/clients.js";
import type { RunningServer } from "#platform/rpc-server/server.js";
import { loadMeshCredentials, type MeshCredentials } from "#platform/trust/mesh-tls.js";
import { build as buildPayment } from "#services/payment/src/build.js";
import type { CardNetwork } from "#services/payment/src/app/card-network.js";
import { createSimulatedCardNetwork } from "#services/payment/src/app/simulated-card-network.js";
import { toMoney } from "#shop/money.js";
import { connect, createTestDatabase } from "../support/databases.js";
import { startTestNats, type TestNats } from "../support/nats.js";
import { testPki } from "../support/mesh-clients.js";

/**
 * The kit's retries against the real payment service: a response lost to the client's attempt
 * timeout is retried, and the payment's idempotency key makes the retry charge nothing more.
 */
const logger = pino({ level: "silent" });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("retries never duplicate an effect", () => {
  let nats: TestNats;
  let payment: RunningServer;
  let databaseUrl: string;
  /** Order's certificate: only order may Charge. */
  let asOrder: MeshCredentials;
  let captures = 0;
  let slowFirstCapture = true;

  beforeAll(async () => {
    nats = await startTestNats();
    databaseUrl = await createTestDatabase();
    const pki = await testPki();
    asOrder = loadMeshCredentials(pki.files("order"), { logger });
    const simulated = createSimulatedCardNetwork();
    // The card network answers the first capture too late for the client: the client gives
    // up, the charge still completes on the server, and the client's retry must find it.
    const network: CardNetwork = {
      async capture(request) {
        captures++;
        if (slowFirstCapture) {
          slowFirstCapture = false;
          await sleep(600);
        }
        return simulated.capture(request);
      },
      refund: (request) => simulated.refund(request),
      void: (request) => simulated.void(request),
    };
    payment = await buildPayment({ logger, databaseUrl, natsUrl: nats.url, streamReplicas: 1, host: "127.0.0.1", port: 0, opsPort: 0, meshTls: pki.files("payment"), maxRequestBytes: 65536, shutdownGraceMs: 500, cardNetwork: network });
  });
  afterAll(async () => {
    await payment?.close();
    await nats?.stop();
    asOrder?.close();
  });

  it("a charge retried after a lost response charges once", async () => {
    const client = createServiceClient(PaymentService, { baseUrl: payment.url, resilience: { attemptTimeoutMs: 250, timeoutMs: 5_000, maxAttempts: 5 },
      tls: { credentials: asOrder, peer: "payment" },
    });
    try {
      const orderId = randomUUID();
      const { payment: result } = await client.client.charge({ orderId, amount: toMoney("USD", 4200), paymentToken: "tok_visa", idempotencyKey: `${orderId}:charge` });
      expect(client.stats().retries).toBeGreaterThanOrEqual(1);
      expect(result?.status).toBe(2); // CAPTURED
      expect(captures).toBe(2); // the retry reached the card network too, which deduped it by key
      const sql = connect(databaseUrl);
      try {
        const rows = await sql`select status from payment.payments where order_id = ${orderId}`;
        expect(rows.map((r) => r["status"])).toEqual(["captured"]);
      } finally {
        await sql.end();
      }
    } finally {
      client.close();
    }
  });
});
