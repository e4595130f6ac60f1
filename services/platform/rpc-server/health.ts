import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "#gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

/**
 * The process's health, served as the standard grpc.health.v1.Health so that load
 * balancers, Kubernetes gRPC probes and grpcurl understand it. The empty service name is
 * the whole server, as the protocol specifies.
 */
export interface HealthRegistry {
  set(service: string, status: ServingStatus): void;
  get(service: string): ServingStatus | undefined;
  /** Marks every service NOT_SERVING and ends all Watch streams; used when draining. */
  shutdown(): void;
  routes(router: ConnectRouter): void;
}

type Listener = (service: string, status: ServingStatus) => void;

export function createHealthRegistry(): HealthRegistry {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.NOT_SERVING]]);
  const listeners = new Set<Listener>();
  const closed = new AbortController();

  const set = (service: string, status: ServingStatus) => {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    for (const listener of listeners) listener(service, status);
  };

  const response = (status: ServingStatus): HealthCheckResponse => create(HealthCheckResponseSchema, { status });

  async function* watch(req: HealthCheckRequest, ctx: HandlerContext): AsyncGenerator<HealthCheckResponse> {
    const queue: ServingStatus[] = [statuses.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN];
    let wake: (() => void) | undefined;
    const listener: Listener = (service, status) => {
      if (service !== req.service) return;
      queue.push(status);
      wake?.();
    };
    const stop = () => wake?.();
    listeners.add(listener);
    ctx.signal.addEventListener("abort", stop);
    closed.signal.addEventListener("abort", stop);
    try {
      for (;;) {
        const next = queue.shift();
        if (next !== undefined) {
          yield response(next);
          continue;
        }
        // Checked only once the queue is empty, so the final NOT_SERVING still goes out.
        if (ctx.signal.aborted || closed.signal.aborted) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      listeners.delete(listener);
      ctx.signal.removeEventListener("abort", stop);
      closed.signal.removeEventListener("abort", stop);
    }
  }

  return {
    set,
    get: (service) => statuses.get(service),
    shutdown() {
      for (const service of statuses.keys()) set(service, ServingStatus.NOT_SERVING);
      closed.abort();
    },
    routes(router) {
      router.service(Health, {
        check(req) {
          const status = statuses.get(req.service);
          if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
          return response(status);
        },
        watch,
        list() {
          return create(HealthListResponseSchema, {
            statuses: Object.fromEntries([...statuses].map(([service, status]) => [service, response(status)])),
          });
        },
      });
    },
  };
}
