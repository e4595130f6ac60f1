import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { accessOf } from "#platform/trust/access-control.js";
import { CUSTOMER_HEADER } from "#platform/trust/mesh-identity.js";
import { customerAgent } from "#shop/customer-agent.js";
import { expectIdentity } from "#platform/trust/mesh-tls.js";
import { startMeshPki, type MeshPki } from "#tools/mesh/mesh-pki.js";
import { OPERATOR } from "#platform/trust/mesh-identity.js";

let shared: Promise<MeshPki> | undefined;

/**
 * The mesh PKI of this test file's process: a CA and a certificate for every deployable and
 * the operator, in a temporary directory removed at exit. Certificates last an hour; a
 * test that needs rotation makes its own.
 */
export function testPki(): Promise<MeshPki> {
  if (!shared) {
    const dir = mkdtempSync(join(tmpdir(), "meshwork-pki-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    shared = startMeshPki(dir, { lifetimeMs: 60 * 60_000 });
  }
  return shared;
}

export type TestProtocol = "grpc" | "connect" | "grpc-web";

export interface CallAs {
  /** Whose certificate to present: a deployable or "operator"; none for an anonymous caller. */
  as?: string;
  /** The deployable the server must be. */
  peer: string;
  protocol?: TestProtocol;
  interceptors?: Interceptor[];
  /** Extra TLS options, e.g. a local address to call from. */
  nodeOptions?: Record<string, unknown>;
}

/** A transport to one mesh port under mTLS, presenting `as`'s certificate (or none). */
export function meshTransport(baseUrl: string, pki: MeshPki, options: CallAs): Transport {
  const own = options.as ? pki.files(options.as) : undefined;
  const tls = {
    ca: readFileSync(pki.operator.caFile),
    ...(own ? { cert: readFileSync(own.certFile), key: readFileSync(own.keyFile) } : {}),
    checkServerIdentity: expectIdentity(options.peer),
    ...options.nodeOptions,
  };
  const interceptors = options.interceptors ?? [];
  switch (options.protocol ?? "grpc") {
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors, sessionManager: new Http2SessionManager(baseUrl, undefined, tls) });
    case "connect":
      return createConnectTransport({ baseUrl, httpVersion: "2", interceptors, sessionManager: new Http2SessionManager(baseUrl, undefined, tls) });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors, nodeOptions: tls });
  }
}

/** Who a test calls a method as: an operator where the contract admits one, else the first caller it names. */
const callerFor = (method: DescMethod) => {
  const { callers } = accessOf(method);
  return callers.has(OPERATOR) ? OPERATOR : [...callers][0]!;
};

/**
 * A client of a mesh service for tests that exercise the service rather than its access
 * control: each method is called as a caller its contract admits, and when that is the
 * gateway acting for a customer, the customer is the request's customer_id unless the test
 * names one in x-meshwork-customer. The security suite calls with chosen identities instead.
 */
export function contractClient<T extends DescService>(service: T, baseUrl: string, pki: MeshPki, options: { peer: string; protocol?: TestProtocol; interceptors?: Interceptor[] }): Client<T> {
  const transports = new Map<string, Transport>();
  const actingForCustomer: Interceptor = (next) => (req) => {
    const customerId = (req.message as { customerId?: unknown } | undefined)?.customerId;
    if (!req.header.has(CUSTOMER_HEADER) && typeof customerId === "string" && customerId !== "") req.header.set(CUSTOMER_HEADER, customerId);
    return next(req);
  };
  const transportFor = (caller: string) => {
    let transport = transports.get(caller);
    if (!transport) {
      const interceptors = [...(options.interceptors ?? []), ...(caller === customerAgent ? [actingForCustomer] : [])];
      transport = meshTransport(baseUrl, pki, { as: caller, peer: options.peer, protocol: options.protocol ?? "grpc", interceptors });
      transports.set(caller, transport);
    }
    return transport;
  };
  const dispatching: Transport = {
    unary: (method, ...rest) => transportFor(callerFor(method)).unary(method, ...rest),
    stream: (method, ...rest) => transportFor(callerFor(method)).stream(method, ...rest),
  };
  return createClient(service, dispatching);
}
