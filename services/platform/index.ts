/**
 * The platform kit's public face: what a service (and the gateway) builds on, by layer. A
 * service imports from "#platform" alone, but for its domain/ (below); the modules behind it
 * are the kit's own business.
 */

// Domain vocabulary: errors with a kind, and checks of request fields. A service's domain/
// imports these modules themselves (#platform/domain/errors.js, input.js), which import
// nothing, rather than this entry, which brings the whole kit.
export { DomainError, InvalidArgumentError, type ErrorKind } from "./domain/errors.js";
export { parseUuid, requirePresent, requireText } from "./domain/input.js";

// Process: configuration, the run loop, logging and metrics.
export { ConfigError, commonConfig, integer, oneOf, optionalString, port, requiredOneOf, serviceConfig, url, type CommonConfig, type DevTraces, type Env, type ServiceConfig } from "./process/config.js";
export { runService } from "./process/lifecycle.js";
export type { Logger } from "./process/logger.js";
export { createMetrics, type Metrics } from "./process/metrics.js";
export { exportSpansInProcess } from "./process/telemetry.js";

// The service skeleton every deployable starts from.
export { createMeshSecurity, startOpsServer, startService, type ServiceRuntime, type ServiceServer } from "./service.js";

// Serving RPCs.
export { startServer } from "./rpc-server/server.js";
export { clientAddressKey, type NodeRequest, type NodeResponse } from "./rpc-server/node-handler.js";
export { createKeyedCounts } from "./rpc-server/keyed-counts.js";

// Calling peers.
export { createServiceClient, type PeerTls, type WireProtocol } from "./rpc-client/clients.js";
export { detachedFromDeadline } from "./rpc-client/deadline.js";
export { createHealthProbe } from "./rpc-client/health-probe.js";
export type { DependencyStats } from "./rpc-client/resilience.js";

// Zero trust: who the caller is and what its contract admits.
export { accessOf } from "./trust/access-control.js";
export { CUSTOMER_HEADER, OPERATOR, actingCustomerOf, callerIdentityKey, callerOf, customerOf } from "./trust/mesh-identity.js";
export { PRINCIPAL_ID_RULE, isSafePrincipalId } from "./trust/principal-id.js";
export { loadMeshCredentials, type MeshCredentials, type MeshTlsFiles } from "./trust/mesh-tls.js";

// Discovery.
export { createServiceDirectory } from "./discovery/registry.js";

// The strangler fig: a route per public method in NATS KV, which side serves a call, shadow comparisons.
export { ROUTES_BUCKET, ROUTE_MODES, RouteConflictError, RouteTableUnavailableError, UnknownRouteError, openRouteTable, validateRouteChange, type RouteChange, type RouteEntry, type RouteMode, type RouteTable } from "./strangler/route-table.js";
export { canaryBucketOf, decideSide, stickyKeyOf, type Side, type SideDecision } from "./strangler/route-decision.js";
export { compareMessages, type CompareOptions, type Comparison, type FieldDifference } from "./strangler/shadow-compare.js";
export { createShadowCaller, defaultShadowPolicy, type ShadowCaller, type ShadowMismatch, type ShadowPolicy, type ShadowResult, type StranglerStats } from "./strangler/shadow-caller.js";

// Data: a service's own database.
export { openDatabase, rowsOf, type Database, type SqlExecutor } from "./data/db.js";
export { keysetAfter, keysetOrder, pageRequest, readPage, type Keyset, type PageKey, type PageRequest } from "./data/paging.js";

// Messaging: the outbox with its relay, the inbox with its consumer, the streams.
export { connectBus, type BusConnection } from "./messaging/connection.js";
export { appendToOutbox, createOutboxTable, outboxAppend, type DomainEvent } from "./messaging/outbox.js";
export { createInboxTable } from "./messaging/inbox.js";
export { on, startEventConsumer, type EventHandler } from "./messaging/event-consumer.js";
export { deadLetterStreamSpec, eventStreamSpec, type StreamSpec } from "./messaging/streams.js";
export { DLQ_SUBJECT, listDeadLetters, replayDeadLetter, type DeadLetter } from "./messaging/dead-letters.js";

// Sagas: orchestration with compensation.
export {
  SignalTimeoutError,
  StepRejectedError,
  createSagaRunner,
  defaultSagaPolicy,
  type ActionHook,
  type SagaActionOutcome,
  type SagaDefinition,
  type SagaPolicy,
  type SagaRunner,
  type SagaSignalView,
  type SagaStepView,
  type SagaWithSteps,
  type SignalOutcome,
  type StepContext,
} from "./saga/saga-runner.js";
export { createSagaTables, type SagaPhase, type SagaRow, type SagaRunnerTables, type SagaState, type SagaStepRow } from "./saga/tables.js";
