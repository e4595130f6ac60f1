import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { createClientTracingInterceptor } from "../process/telemetry.js";
import { createBalancer, type InstanceTransport } from "../discovery/balancer.js";
import type { ServiceDirectory } from "../discovery/registry.js";
import { createResilience, type DependencyStats, type ResiliencePolicy } from "./resilience.js";
import { expectIdentity, isPeerRefused, type MeshCredentials } from "../trust/mesh-tls.js";
import { identityUri } from "../trust/mesh-identity.js";

/**
 * "connect": the Connect protocol with binary protobuf over HTTP/2, our default for hops
 * inside the mesh because connect-node spends roughly half the client CPU per call that
 * its gRPC framing does (measured when this default was chosen).
 * "grpc": standard gRPC, for peers that speak nothing else.
 */
export type WireProtocol = "connect" | "grpc";

export interface ClientOptions {
  baseUrl: string;
  protocol?: WireProtocol;
  /** Names the dependency in errors and stats; defaults to the service's name. */
  name?: string;
  /** Overrides of the default resilience policy for this dependency. */
  resilience?: Partial<ResiliencePolicy>;
  /** Further interceptors, inside the resilience stack. */
  interceptors?: Interceptor[];
  /** Instances found in the registry; without any, calls go to baseUrl. */
  directory?: ServiceDirectory;
  /**
   * mTLS: present this process's certificate, and accept only a server whose certificate
   * is spiffe://meshwork/<peer>. Unset under MESH_TLS=off, where a sidecar does both.
   */
  tls?: PeerTls;
}

/** Who the caller is, and whom it means to reach. */
export interface PeerTls {
  credentials: MeshCredentials;
  /** The deployable the server must be, e.g. "payment". */
  peer: string;
}

export interface ServiceClient<T extends DescService> {
  readonly client: Client<T>;
  /** Breaker state and call counts, for metrics and the console. */
  stats(): DependencyStats;
  /** Closes the HTTP/2 session; calls after this fail. */
  close(): void;
}

/**
 * A generated client over one long-lived HTTP/2 session per dependency, with the
 * resilience stack (timeout, retry, breaker, bulkhead) on every call. Create it once at
 * start and share it: a client per call would pay a connection setup every time, and
 * would not share its breaker.
 */
export function createServiceClient<T extends DescService>(service: T, options: ClientOptions): ServiceClient<T> {
  // Under mTLS an http:// address would be a cleartext call that presents and checks
  // nothing, so none is used: not the configured one, nor any a registry entry names.
  const scheme = options.tls ? "https:" : "http:";
  if (new URL(options.baseUrl).protocol !== scheme) throw new Error(`${options.name ?? service.typeName}: ${options.baseUrl} must be a ${scheme}// address${options.tls ? " under mTLS" : ""}`);
  const directory: ServiceDirectory | undefined = options.directory && {
    instances: (name) => options.directory!.instances(name).filter((instance) => new URL(instance.address).protocol === scheme),
    stop: () => options.directory!.stop(),
  };
  const resilience = createResilience(options.name ?? service.typeName, options.resilience);
  const balancer = directory && createBalancer(service, directory, (baseUrl) => connectTo(baseUrl, options.protocol, [], options.tls));
  // A span per attempt, inside the resilience stack, so retries show up in the trace; the
  // balancer innermost, so every attempt chooses its instance.
  const interceptors = [resilience.interceptor, createClientTracingInterceptor(), ...(options.interceptors ?? []), ...(balancer ? [balancer.interceptor] : [])];
  const fallback = connectTo(options.baseUrl, options.protocol, interceptors, options.tls);
  return {
    client: createClient(service, fallback.transport),
    stats: resilience.stats,
    close: () => {
      fallback.close();
      balancer?.close();
    },
  };
}

/** A transport over one long-lived HTTP/2 session to one address. */
function connectTo(baseUrl: string, protocol: WireProtocol | undefined, interceptors: Interceptor[], tls: PeerTls | undefined): InstanceTransport {
  const sessionManager = new Http2SessionManager(baseUrl, { pingIntervalMs: 30_000, idleConnectionTimeoutMs: 5 * 60_000 }, tls && meshSessionOptions(tls));
  const common = { baseUrl, httpVersion: "2" as const, sessionManager, interceptors };
  const transport = protocol === "grpc" ? createGrpcTransport(common) : createConnectTransport({ ...common, useBinaryFormat: true });
  return { transport: tls ? refusingImpostors(transport, baseUrl, tls.peer) : transport, close: () => sessionManager.abort() };
}

/**
 * Options for http2.connect under mTLS. http2.connect copies its options at each connect,
 * so the getter hands every new session the credentials current then: a rotated
 * certificate is used from the next connection on.
 */
export function meshSessionOptions(tls: PeerTls) {
  return {
    get secureContext() {
      return tls.credentials.context();
    },
    checkServerIdentity: expectIdentity(tls.peer),
  };
}

/**
 * connect-node reports a refused server certificate as INTERNAL, which would read as a bug
 * of the callee (a saga parks after enough of them). It is UNAVAILABLE: that address does
 * not serve `peer`, and the call belongs on another; the balancer ejects the address.
 */
function refusingImpostors(transport: Transport, baseUrl: string, peer: string): Transport {
  const unavailable = (err: unknown): never => {
    if (!isPeerRefused(err)) throw err;
    throw new ConnectError(`${baseUrl} is not ${identityUri(peer)}: ${ConnectError.from(err).rawMessage}`, Code.Unavailable, undefined, undefined, err);
  };
  return {
    unary: (...args) => transport.unary(...args).catch(unavailable),
    stream: (...args) => transport.stream(...args).catch(unavailable),
  };
}
