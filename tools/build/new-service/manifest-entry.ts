import type { Deployable } from "#mesh";

/** Mesh ports start here, each service's ops port 1000 above its own (README, Configuration). */
const FIRST_MESH_PORT = 50051;
const OPS_OFFSET = 1000;
const LAST_MESH_PORT = 50999;

/** The lowest mesh port whose pair (port, port + 1000) no deployable uses for either. */
export function freePortPair(deployables: readonly Deployable[]): { port: number; opsPort: number } {
  const taken = new Set(deployables.flatMap((d) => [d.port.default, d.opsPort.default]));
  for (let port = FIRST_MESH_PORT; port <= LAST_MESH_PORT; port++) {
    if (!taken.has(port) && !taken.has(port + OPS_OFFSET)) return { port, opsPort: port + OPS_OFFSET };
  }
  throw new Error(`no free port pair between ${FIRST_MESH_PORT} and ${LAST_MESH_PORT}`);
}

/** A service that serves one contract and calls no peer, whose outbox feeds its stream, which its own durable reads back. */
export function newServiceEntry(name: string, ports: { port: number; opsPort: number }): Deployable {
  const variable = name.toUpperCase();
  const pascal = name[0]!.toUpperCase() + name.slice(1);
  return {
    name,
    main: `services/${name}/main.ts`,
    port: { variable: `${variable}_PORT`, default: ports.port },
    opsPort: { variable: `${variable}_OPS_PORT`, default: ports.opsPort },
    calls: [],
    schema: name,
    serves: [`shop.${name}.v1.${pascal}Service`],
    publishes: name,
    consumes: [{ context: name, durable: name }],
  };
}

/** A value as TypeScript source, on one line: `{ key: "value", list: [1, 2] }`. */
function literal(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(literal).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    const fields = Object.entries(value).map(([key, field]) => `${key}: ${literal(field)}`);
    return fields.length === 0 ? "{}" : `{ ${fields.join(", ")} }`;
  }
  return JSON.stringify(value);
}

/** The entry as the manifest writes its entries: one field a line. */
export function renderEntry(entry: Deployable, indent: string): string {
  const fields = Object.entries(entry).map(([key, value]) => `${indent}  ${key}: ${literal(value)},`);
  return [`${indent}{`, ...fields, `${indent}},`].join("\n");
}

/**
 * services/mesh.ts with `entry` inserted into meshDeployables just before the gateway's
 * entry, which starts last because it calls the services. A text edit, so the file keeps
 * its comments and layout; throws if the array or the gateway's entry is not where expected.
 */
export function insertEntry(source: string, entry: Deployable): string {
  const arrayStart = source.indexOf("export const meshDeployables = [");
  if (arrayStart < 0) throw new Error("services/mesh.ts: `export const meshDeployables = [` not found");
  const gatewayName = source.indexOf('name: "gateway"', arrayStart);
  if (gatewayName < 0) throw new Error('services/mesh.ts: the gateway\'s entry (name: "gateway") not found in meshDeployables');
  const gatewayOpen = source.lastIndexOf("{", gatewayName);
  const lineStart = source.lastIndexOf("\n", gatewayOpen) + 1;
  const indent = source.slice(lineStart, gatewayOpen);
  if (gatewayOpen < arrayStart || indent.trim() !== "") throw new Error("services/mesh.ts: the gateway's entry does not start on a line of its own");
  return `${source.slice(0, lineStart)}${renderEntry(entry, indent)}\n${source.slice(lineStart)}`;
}
