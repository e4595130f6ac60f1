import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Deployable } from "#mesh";

/** A name the scaffold refuses, with why; `npm run new-service` exits 2 on it. */
export class InvalidServiceNameError extends Error {
  override readonly name = "InvalidServiceNameError";
}

const NAME = /^[a-z]{2,20}$/;

/**
 * Names that would collide with something the mesh derives from a service's name: its
 * identity and NATS user, its stream SHOP_<NAME>, its variables <NAME>_PORT and <NAME>_URL,
 * its Postgres role and schema, its Kubernetes Deployment.
 */
const meshReserved: Readonly<Record<string, string>> = {
  operator: "the operator's certificate and NATS user are named so",
  customer: "it is an access caller of the gateway's public service",
  anyone: "it is an access caller of the gateway's public service",
  suite: "the test suites' own NATS user is named so",
  dlq: "its stream would be SHOP_DLQ, the dead letters' stream",
  ops: "OPS_PORT is every process's ops port variable",
  database: "DATABASE_URL is every service's database variable",
  nats: "NATS_URL is every process's NATS variable, and nats is a Deployment of deploy/k8s",
  advertise: "ADVERTISE_URL is every service's advertised address variable",
  postgres: "it is the Postgres superuser and a Deployment of deploy/k8s",
  public: "it is Postgres' default schema and the role every role belongs to",
  meshwork: "it is the mesh's own name: its database, Kubernetes namespace and image",
};

/** Reserved in SQL (the name is a schema and a role, and the service's test writes raw SQL against it). */
const sqlReserved =
  "all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate collation column concurrently constraint create cross default deferrable desc distinct do else end except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing primary references returning right select similar some symmetric table tablesample then to trailing true union unique user using variadic verbose when where window with";
/** Keywords where the name becomes a package path segment (Python stubs) or may become an identifier (TypeScript). */
const languageReserved =
  "and as assert async await break case catch class const continue debugger def default del delete do elif else enum except export extends false finally for from function global if implements import in instanceof interface is lambda let new none nonlocal not null or package pass private protected public raise return static super switch this throw true try typeof var void while with yield";

const reservedWords = new Map<string, string>([
  ...sqlReserved.split(" ").map((word) => [word, "it is a reserved word in SQL"] as const),
  ...languageReserved.split(" ").map((word) => [word, "it is a keyword in TypeScript or Python"] as const),
  ...Object.entries(meshReserved),
]);

/** Throws InvalidServiceNameError unless `name` is 2 to 20 lower-case letters. */
export function checkNameFormat(name: string): void {
  if (!NAME.test(name)) throw new InvalidServiceNameError(`"${name}" is not a service name: use 2 to 20 lower-case letters (a-z), e.g. "shipping"`);
}

/**
 * Checks a new service's name against the format, the manifest (names and schemas taken),
 * the folders a service would claim under `root`, and the reserved words. Throws
 * InvalidServiceNameError saying what is wrong.
 */
export function validateServiceName(name: string, root: string, deployables: readonly Deployable[]): void {
  checkNameFormat(name);
  if (deployables.some((d) => d.name === name)) throw new InvalidServiceNameError(`"${name}" is already a deployable of services/mesh.ts`);
  const owner = deployables.find((d) => d.schema === name || d.publishes === name);
  if (owner) throw new InvalidServiceNameError(`"${name}" is taken: ${owner.name} owns the schema or the event context of that name`);
  const why = reservedWords.get(name);
  if (why) throw new InvalidServiceNameError(`"${name}" is reserved: ${why}`);
  for (const folder of [join("services", name), join("proto", "shop", name), join("gen", "shop", name)]) {
    if (existsSync(join(root, folder))) throw new InvalidServiceNameError(`"${name}" is taken: ${folder} exists`);
  }
}
