import { OPERATOR } from "#platform/trust/mesh-identity.js";
import { type Deployable } from "#mesh";
import { natsInboxPrefix } from "#platform/messaging/connection.js";
import { DISCOVERY_BUCKET } from "#platform/discovery/registry.js";
import { ROUTES_BUCKET } from "#platform/strangler/route-table.js";
import { deadLetterSubject } from "#platform/messaging/streams.js";
import { deadLetterStream, eventStream } from "#shop/streams.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";

/**
 * A NATS user and the subjects it may use; everything else is refused by the server. Every
 * user signs in with a password the server reads from its environment
 * (`natsPasswordVariable(name)`), so the config file holds no secret.
 */
export interface NatsUser {
  name: string;
  publish: readonly string[];
  subscribe: readonly string[];
}

/** The variable the server reads a user's password from, e.g. ORDER_NATS_PASSWORD. */
export const natsPasswordVariable = (name: string) => `${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_NATS_PASSWORD`;

const api = "$JS.API";
const registryStream = `KV_${DISCOVERY_BUCKET}`;
const registrySubjects = `$KV.${DISCOVERY_BUCKET}`;

/** Creating a stream, or bringing it to our config (ensureStream): never DELETE, PURGE or MSG.DELETE. */
const ensureStream = (stream: string) => [`${api}.STREAM.INFO.${stream}`, `${api}.STREAM.CREATE.${stream}`, `${api}.STREAM.UPDATE.${stream}`];

/**
 * Following the registry (kv.watch): an ordered push consumer per watch, created with
 * nats.js's `CONSUMER.CREATE.<stream>.<name>.<filter>`, its flow control answered on $JS.FC;
 * deliveries go to the watcher's own inbox. Not CONSUMER.DELETE: an ordered consumer that
 * resets tries to delete its predecessor, which may fail (the server drops it after 5 idle
 * minutes), but with it any user could delete every other watcher.
 */
const followRegistry = [`${api}.CONSUMER.CREATE.${registryStream}.*.${registrySubjects}.>`, `$JS.FC.${registryStream}.>`];

/** Joining the registry: the bucket is created if missing (Kvm.create looks it up first and never updates it). */
const openRegistry = [`${api}.STREAM.INFO.${registryStream}`, `${api}.STREAM.CREATE.${registryStream}`];

const routesStream = `KV_${ROUTES_BUCKET}`;
const routesSubjects = `$KV.${ROUTES_BUCKET}`;

/**
 * Opening and following the strangler fig's route table, as openRegistry and followRegistry
 * do the registry's; STREAM.INFO also answers kv.status, which tells an empty table from one
 * still loading. Reading only: the routes are written (kv.put, kv.update) by `putRoutes`.
 */
const followRoutes = [`${api}.STREAM.INFO.${routesStream}`, `${api}.STREAM.CREATE.${routesStream}`, `${api}.CONSUMER.CREATE.${routesStream}.*.${routesSubjects}.>`, `$JS.FC.${routesStream}.>`];
const putRoutes = `${routesSubjects}.>`;

/**
 * A deployable that calls the old shop routes between it and its replacement (the gateway,
 * and order for its prices), so it follows the route table.
 */
const followsRoutes = (deployable: Deployable) => deployable.calls.includes("oldshop");

/** Every service may follow the registry: it holds addresses, no secret, and the manifest does not say who calls peers. */
function serviceUser(deployable: Deployable): NatsUser {
  const publish = [`${api}.INFO`, ...openRegistry, ...followRegistry, ...(followsRoutes(deployable) ? followRoutes : [])];
  // Announcing and withdrawing (kv.put, kv.delete) only its own services' instances.
  for (const service of deployable.serves) publish.push(`${registrySubjects}.${service}.>`);
  if (deployable.publishes) {
    const stream = eventStream(deployable.publishes);
    publish.push(...stream.subjects, ...ensureStream(stream.name));
  }
  for (const { context, durable } of deployable.consumes ?? []) {
    const stream = eventStream(context).name;
    publish.push(
      // INFO only: the stream is its owner's to create and configure (event-consumer.ts waits for it).
      `${api}.STREAM.INFO.${stream}`,
      `${api}.CONSUMER.INFO.${stream}.${durable}`,
      `${api}.CONSUMER.CREATE.${stream}.${durable}.>`,
      `${api}.CONSUMER.MSG.NEXT.${stream}.${durable}`,
      `$JS.ACK.${stream}.${durable}.>`,
      deadLetterSubject(durable),
    );
  }
  if (deployable.consumes?.length) publish.push(...ensureStream(deadLetterStream.name));
  const subscribe = [`${natsInboxPrefix(deployable.name)}.>`, ...(deployable.watches ?? []).flatMap((context) => eventStream(context).subjects)];
  return { name: deployable.name, publish: [...new Set(publish)], subscribe };
}

/**
 * The operator: `npm run dlq` lists SHOP_DLQ (STREAM.INFO, STREAM.MSG.GET) and replays a
 * dead letter by republishing it to its original subject, then deleting it from SHOP_DLQ.
 * Replay is why the operator may publish every context's events (shop.*.v1.>): the one
 * user besides each context's own service that can, and never a service process.
 * Otherwise it reads: stream and consumer info, stored messages (the registry's too, as
 * kv.get on an opened bucket asks STREAM.MSG.GET), and the registry's watch.
 */
function operatorUser(): NatsUser {
  return {
    name: OPERATOR,
    publish: [
      `${api}.INFO`,
      `${api}.STREAM.NAMES`,
      `${api}.STREAM.LIST`,
      `${api}.STREAM.INFO.*`,
      `${api}.STREAM.MSG.GET.*`,
      `${api}.CONSUMER.NAMES.*`,
      `${api}.CONSUMER.LIST.*`,
      `${api}.CONSUMER.INFO.*.*`,
      ...followRegistry,
      // Moving a route by hand (`npm run route` goes through the gateway's console instead).
      ...followRoutes,
      putRoutes,
      `${api}.STREAM.MSG.DELETE.${deadLetterStream.name}`,
      "shop.*.v1.>",
    ],
    subscribe: [`${natsInboxPrefix(OPERATOR)}.>`],
  };
}

/**
 * The operator console's backend in the gateway (dead-letters.ts): it lists SHOP_DLQ and
 * replays one letter (STREAM.INFO, STREAM.MSG.GET, then STREAM.MSG.DELETE on SHOP_DLQ alone)
 * by republishing it to its original subject. Only a subject some consumer of the manifest
 * reads can hold a dead letter, so only those may be published: no other context's events,
 * no other stream read, nothing of the registry. It is the one service-side user that moves
 * routes (OperatorService.SetRoute), so it follows and writes the route table. Replies come to
 * its own inbox, as a JetStream publish's acknowledgement does.
 */
function consoleUser(deployables: readonly Deployable[]): NatsUser {
  const consumed = deployables.flatMap((d) => (d.consumes ?? []).flatMap(({ context }) => eventStream(context).subjects));
  const dlq = deadLetterStream.name;
  return {
    name: CONSOLE,
    // INFO: nats.js's JetStream manager asks it once on connecting.
    publish: [`${api}.INFO`, `${api}.STREAM.INFO.${dlq}`, `${api}.STREAM.MSG.GET.${dlq}`, `${api}.STREAM.MSG.DELETE.${dlq}`, ...new Set(consumed), ...followRoutes, putRoutes],
    subscribe: [`${natsInboxPrefix(CONSOLE)}.>`],
  };
}

/**
 * One user per deployable, named by it, with what its code uses on the bus; the operator; and
 * the console's backend. A legacy deployable (the old shop) gets none: it uses no NATS.
 */
export function meshNatsUsers(deployables: readonly Deployable[]): NatsUser[] {
  const users = [...deployables.filter((d) => !d.legacy).map(serviceUser), operatorUser(), consoleUser(deployables)];
  const names = users.map((u) => u.name);
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated) throw new Error(`NATS user "${repeated}" is defined twice`);
  return users;
}

const USER_NAME = /^[a-z][a-z0-9-]*$/;
// Subjects are quoted in the config; a token of anything but these would need escaping.
const SUBJECT = /^[A-Za-z0-9_$.*>-]+$/;

const quoted = (values: readonly string[]) => `[${values.map((value) => JSON.stringify(value)).join(", ")}]`;

/**
 * A nats-server configuration (2.9 and later: accounts, users with passwords and
 * publish/subscribe allow lists, nothing newer such as auth callout) for a server on
 * `host:port` with JetStream in `storeDir`. One account holds JetStream and every user, so
 * the users share the streams and the registry while permissions keep each to its own
 * subjects. Passwords are `$VARIABLE` references resolved from the server's environment;
 * with none set for a user, the server refuses to start.
 */
export function natsServerConfig(options: { port: number; host: string; storeDir: string; users: readonly NatsUser[] }): string {
  if (options.users.length === 0) throw new Error("a NATS config needs at least one user");
  const users = options.users.map((user) => {
    if (!USER_NAME.test(user.name)) throw new Error(`"${user.name}" is not a NATS user name`);
    const bad = [...user.publish, ...user.subscribe].find((subject) => !SUBJECT.test(subject));
    if (bad !== undefined) throw new Error(`"${bad}" is not a subject NATS user "${user.name}" may be given`);
    return [
      "      {",
      `        user: ${JSON.stringify(user.name)}`,
      `        password: $${natsPasswordVariable(user.name)}`,
      "        permissions: {",
      `          publish: { allow: ${quoted(user.publish)} }`,
      `          subscribe: { allow: ${quoted(user.subscribe)} }`,
      "        }",
      "      }",
    ].join("\n");
  });
  return [
    "# Written by deploy/generate-deploy.ts (users from tools/infra/nats-accounts.ts); passwords come from the server's environment.",
    `listen: ${JSON.stringify(`${options.host}:${options.port}`)}`,
    `jetstream: { store_dir: ${JSON.stringify(options.storeDir)} }`,
    "accounts: {",
    "  MESHWORK: {",
    "    jetstream: enabled",
    "    users: [",
    users.join("\n"),
    "    ]",
    "  }",
    "}",
    "",
  ].join("\n");
}
