import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { pino } from "pino";
import * as v1 from "#gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "#gen/grpc/reflection/v1alpha/reflection_pb.js";
import { OrderService } from "#gen/shop/order/v1/order_service_pb.js";
import { startServer, type RunningServer } from "./server.js";

/** What grpcurl does: list, then fetch descriptors by symbol over the bidi stream. */
describe("server reflection", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(
      { logger: pino({ level: "silent" }), services: [OrderService], routes: () => {}, maxRequestBytes: 65536, shutdownGraceMs: 500 },
      { host: "127.0.0.1", port: 0 },
    );
  });
  afterAll(() => server.close());

  async function ask(requests: MessageInitShape<typeof v1.ServerReflectionRequestSchema>[]) {
    const client = createClient(v1.ServerReflection, createGrpcTransport({ baseUrl: server.url }));
    const answers: v1.ServerReflectionResponse[] = [];
    async function* send() {
      for (const r of requests) yield create(v1.ServerReflectionRequestSchema, r);
    }
    for await (const answer of client.serverReflectionInfo(send())) answers.push(answer);
    return answers;
  }

  it("lists the services, health and reflection included", async () => {
    const [answer] = await ask([{ messageRequest: { case: "listServices", value: "" } }]);
    const names = answer?.messageResponse.case === "listServicesResponse" ? answer.messageResponse.value.service.map((s) => s.name) : [];
    expect(names).toEqual(expect.arrayContaining(["shop.order.v1.OrderService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]));
  });

  it("returns a method's file with its imports, enough to build the request type", async () => {
    const [answer] = await ask([{ messageRequest: { case: "fileContainingSymbol", value: "shop.order.v1.OrderService.CreateOrder" } }]);
    expect(answer?.messageResponse.case).toBe("fileDescriptorResponse");
    const protos = answer!.messageResponse.case === "fileDescriptorResponse" ? answer!.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b)) : [];
    expect(protos.map((p) => p.name)).toEqual(expect.arrayContaining(["shop/order/v1/order_service.proto", "shop/common/v1/money.proto", "google/protobuf/timestamp.proto"]));
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: protos }));
    expect(registry.getMessage("shop.order.v1.CreateOrderRequest")?.fields.map((f) => f.name)).toEqual(["customer_id", "items", "payment_token", "request_id"]);
  });

  it("answers unknown symbols with NOT_FOUND inside the stream, and serves v1alpha too", async () => {
    const [answer] = await ask([{ messageRequest: { case: "fileContainingSymbol", value: "shop.nope.v1.Nothing" } }]);
    expect(answer?.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
    const alpha = createClient(v1alpha.ServerReflection, createGrpcTransport({ baseUrl: server.url }));
    async function* one() {
      yield create(v1alpha.ServerReflectionRequestSchema, { messageRequest: { case: "fileByFilename", value: "shop/order/v1/order_service.proto" } });
    }
    const cases: (string | undefined)[] = [];
    for await (const response of alpha.serverReflectionInfo(one())) cases.push(response.messageResponse.case);
    expect(cases).toEqual(["fileDescriptorResponse"]);
  });
});
