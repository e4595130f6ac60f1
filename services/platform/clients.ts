import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";

/**
 * "connect": the Connect protocol with binary protobuf over HTTP/2, our default for hops
 * inside the mesh because connect-node spends roughly half the client CPU per call that
 * its gRPC framing does (see DESIGN.md, "Measured on this machine").
 * "grpc": standard gRPC, for peers that speak nothing else.
 */
export type WireProtocol = "connect" | "grpc";

export interface ClientOptions {
  baseUrl: string;
  protocol?: WireProtocol;
  /** Applied to every call that does not set its own deadline. */
  defaultTimeoutMs?: number;
  /** Outermost first. The resilience policies plug in here. */
  interceptors?: Interceptor[];
}

export interface ServiceClient<T extends DescService> {
  readonly client: Client<T>;
  /** Closes the HTTP/2 session; calls after this fail. */
  close(): void;
}

/**
 * A generated client over one long-lived HTTP/2 session per dependency. Create it once at
 * start and share it: a client per call would pay a connection setup every time.
 */
export function createServiceClient<T extends DescService>(service: T, options: ClientOptions): ServiceClient<T> {
  const sessionManager = new Http2SessionManager(options.baseUrl, { pingIntervalMs: 30_000, idleConnectionTimeoutMs: 5 * 60_000 });
  const common = {
    baseUrl: options.baseUrl,
    httpVersion: "2" as const,
    sessionManager,
    interceptors: options.interceptors ?? [],
    defaultTimeoutMs: options.defaultTimeoutMs ?? 5_000,
  };
  const transport = options.protocol === "grpc" ? createGrpcTransport(common) : createConnectTransport({ ...common, useBinaryFormat: true });
  return { client: createClient(service, transport), close: () => sessionManager.abort() };
}
