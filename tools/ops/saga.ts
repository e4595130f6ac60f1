/**
 * `npm run saga -- list [--state S] [--retrying] | show <order-id> | retry <order-id> | compensate <order-id>`:
 * the operators' tool for place-order sagas. It calls order's SagaAdminService on order's mesh
 * port with the operator certificate, both found in the running mesh's state file
 * (.data/mesh.json, written by `npm start`; MESH_STATE_FILE names another). The person is
 * named in the x-operator header (--operator, default the OS user) for the audit, beside the
 * certificate's verified identity; payment tokens arrive already redacted by the server.
 *
 * Exit status: 0 done, 1 the service refused or failed (its status is printed), 2 bad usage.
 */
import { userInfo } from "node:os";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { SagaState } from "#gen/shop/order/v1/order_service_pb.js";
import { SagaAdminService, SagaSchema, type Saga } from "#gen/shop/order/v1/saga_admin_service_pb.js";
import type { Env } from "#platform/process/config.js";
import { defaultMeshStateFile, operatorTransport, readMeshState } from "../mesh/mesh-state.js";
import { dataDir } from "../mesh/local-infra.js";
import { OPERATOR_HEADER } from "#services/order/src/rpc/saga-admin-routes.js";

const USAGE = `usage: npm run saga -- <command> [options]
  list [--state running|compensating|waiting|completed|compensated|parked] [--retrying] [--limit N] [--page-token T] [--json]
  show <order-id>   (with each step's timeline: attempts, compensations, timers, signals)
  retry <order-id>
  compensate <order-id> [--reason TEXT]
options: --operator NAME (default: your user name)   the mesh: .data/mesh.json, or MESH_STATE_FILE`;

/** Where the CLI writes; a test passes its own. */
export interface CliOutput {
  out(line: string): void;
  err(line: string): void;
}

class UsageError extends Error {}

/** The contract's saga states by their lower-case names (running, parked, ...), for --state. */
const stateByName = new Map(
  Object.entries(SagaState)
    .filter((entry): entry is [string, SagaState] => typeof entry[1] === "number" && entry[1] !== SagaState.UNSPECIFIED)
    .map(([name, state]) => [name.toLowerCase(), state]),
);
const stateNames = [...stateByName.keys()];
const stateName = (state: SagaState) => SagaState[state]?.toLowerCase() ?? String(state);

function parse(args: string[]) {
  try {
    const { positionals, values } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        state: { type: "string" },
        limit: { type: "string" },
        "page-token": { type: "string" },
        reason: { type: "string" },
        operator: { type: "string" },
        json: { type: "boolean" },
        retrying: { type: "boolean" },
      },
    });
    return { positionals, values };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function requireOrderIdArg(positionals: string[]): string {
  if (positionals.length !== 2) throw new UsageError(`${positionals[0]} takes exactly one <order-id>`);
  return positionals[1]!;
}

/** One line per saga: what an operator scans for. */
function table(sagas: readonly Saga[]): string[] {
  const rows = sagas.map((s) => [
    s.orderId,
    stateName(s.state),
    String(s.version),
    s.currentStep || "-",
    String(s.attempts),
    s.nextAttemptTime ? timestampDate(s.nextAttemptTime).toISOString() : "-",
    s.lastError ? (s.lastError.length > 80 ? `${s.lastError.slice(0, 79)}…` : s.lastError) : "-",
  ]);
  const header = ["ORDER", "STATE", "VERSION", "STEP", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((cells) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
}

const asJson = (saga: Saga | undefined) => JSON.stringify(saga ? toJson(SagaSchema, saga) : null, null, 2);

/** Runs one command; returns the exit status. */
export async function sagaCli(args: string[], env: Env, io: CliOutput): Promise<number> {
  let connection: { close(): void } | undefined;
  try {
    const { positionals, values } = parse(args);
    const command = positionals[0];
    const mesh = readMeshState(env, defaultMeshStateFile(dataDir));
    const order = mesh.services["order"];
    if (!order) throw new Error("the mesh state names no order service");
    const operator = operatorTransport(order.url, "order", mesh.operator);
    connection = operator;
    const client = createClient(SagaAdminService, operator.transport);
    const headers = { [OPERATOR_HEADER]: values.operator ?? userInfo().username };
    switch (command) {
      case "list": {
        if (positionals.length !== 1) throw new UsageError("list takes no arguments");
        const name = values.state;
        if (name !== undefined && !stateByName.has(name)) throw new UsageError(`--state must be one of ${stateNames.join(", ")}`);
        const limit = values.limit === undefined ? 0 : Number(values.limit); // 0: the server's default
        if (values.limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 100)) throw new UsageError("--limit must be an integer from 1 to 100");
        const page = await client.listSagas(
          { state: name ? stateByName.get(name)! : SagaState.UNSPECIFIED, retrying: values.retrying ?? false, pageSize: limit, pageToken: values["page-token"] ?? "" },
          { headers },
        );
        if (values.json) io.out(JSON.stringify(page.sagas.map((s) => toJson(SagaSchema, s)), null, 2));
        else if (page.sagas.length === 0) io.out("no sagas");
        else for (const line of table(page.sagas)) io.out(line);
        if (page.nextPageToken) io.out(`more: --page-token ${page.nextPageToken}`);
        return 0;
      }
      case "show": {
        const { saga } = await client.getSaga({ orderId: requireOrderIdArg(positionals) }, { headers });
        io.out(asJson(saga));
        return 0;
      }
      case "retry": {
        const { saga } = await client.retrySaga({ orderId: requireOrderIdArg(positionals) }, { headers });
        io.out(`retry accepted: the saga of order ${saga?.orderId} is ${saga ? stateName(saga.state) : "gone"}`);
        return 0;
      }
      case "compensate": {
        const { saga } = await client.compensateSaga({ orderId: requireOrderIdArg(positionals), reason: values.reason ?? "" }, { headers });
        io.out(`compensation accepted: the saga of order ${saga?.orderId} is ${saga ? stateName(saga.state) : "gone"}${saga?.cancelRequested ? " (compensates at its next step)" : ""}`);
        return 0;
      }
      default:
        throw new UsageError(command ? `unknown command "${command}"` : "no command");
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`saga: ${err.message}\n${USAGE}`);
      return 2;
    }
    const status = ConnectError.from(err);
    io.err(`saga: ${Code[status.code]}: ${status.rawMessage}`);
    return 1;
  } finally {
    connection?.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.exitCode = await sagaCli(process.argv.slice(2), process.env, { out: (line) => console.log(line), err: (line) => console.error(line) });
}
