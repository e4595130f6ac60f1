import { ScalarType, getOption, hasOption, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { limits } from "#gen/meshwork/v1/limits_pb.js";

/** Characters a string field may hold without a `(meshwork.v1.limits).max_len` option. */
const DEFAULT_MAX_LEN = 128;
/** Items a repeated field or map may hold without a `(meshwork.v1.limits).max_items` option. */
const DEFAULT_MAX_ITEMS = 100;

/**
 * Enforces the contract's request limits (proto/meshwork/v1/limits.proto) before any
 * handler runs: every string field at most its `max_len` characters and free of NUL, every
 * repeated field and map at most its `max_items` entries, in nested messages too. A client
 * past a limit gets INVALID_ARGUMENT naming the field ("reason: must be at most 1000
 * characters"), instead of an unbounded row, a query with more bind parameters than
 * Postgres takes, or a NUL that Postgres text cannot store failing deep in a transaction.
 *
 * What to check is worked out once per message type from its descriptor; a call only reads
 * the fields that have a limit.
 */
export function createStringGuardInterceptor(): Interceptor {
  return (next) => (req) => {
    const plan = planFor(req.method.input);
    if (!matters(plan)) return next(req);
    if (!req.stream) {
      const found = findViolation(plan, req.message as unknown as Fields);
      return found ? Promise.reject(violationError(found)) : next(req);
    }
    return next({ ...req, message: guardEach(plan, req.message as AsyncIterable<never>) });
  };
}

/** A message in protobuf-es's local form: fields are properties named by localName. */
type Fields = Record<string, unknown>;

/** What to check in one message type; `planning` until its own fields are planned. */
interface MessagePlan {
  readonly fields: FieldPlan[];
  planning: boolean;
}

interface FieldPlan {
  readonly name: string;
  readonly localName: string;
  /** The oneof group's localName, for a field that is a member of one. */
  readonly oneof: string | undefined;
  /** Returns the violation in a present value: a path suffix ("", "[2]", "[2].sku") and the problem. */
  readonly check: (value: unknown) => Violation | undefined;
}

interface Violation {
  readonly path: string;
  readonly problem: string;
}

const plans = new WeakMap<DescMessage, MessagePlan>();

function planFor(desc: DescMessage): MessagePlan {
  const cached = plans.get(desc);
  if (cached) return cached;
  const plan: MessagePlan = { fields: [], planning: true };
  plans.set(desc, plan); // before the fields, so a message type that contains itself terminates
  for (const field of desc.fields) {
    const check = checkFor(field);
    if (check) plan.fields.push({ name: field.name, localName: field.localName, oneof: field.oneof?.localName, check });
  }
  plan.planning = false;
  return plan;
}

/** A plan worth running: it checks something, or is still being planned (a cycle). */
const matters = (plan: MessagePlan) => plan.fields.length > 0 || plan.planning;

function checkFor(field: DescField): FieldPlan["check"] | undefined {
  const option = hasOption(field, limits) ? getOption(field, limits) : undefined;
  const maxLen = option?.maxLen || DEFAULT_MAX_LEN;
  const maxItems = option?.maxItems || DEFAULT_MAX_ITEMS;
  const stringProblem = (value: string) => problemIn(value, maxLen);
  const stringCheck = (value: unknown) => atField(stringProblem(value as string));
  switch (field.fieldKind) {
    case "scalar":
      return field.scalar === ScalarType.STRING ? stringCheck : undefined;
    case "enum":
      return undefined;
    case "message": {
      // protobuf-es unwraps google.protobuf wrappers in singular fields outside a oneof,
      // and gives google.protobuf.Struct as plain JSON except inside google.protobuf.Value;
      // the request size bounds that JSON.
      if (isWrapperDesc(field.message) && !field.oneof) {
        return field.message.fields[0]?.scalar === ScalarType.STRING ? stringCheck : undefined;
      }
      if (field.message.typeName === "google.protobuf.Struct" && field.parent.typeName !== "google.protobuf.Value") return undefined;
      return messageCheck(field.message);
    }
    case "list": {
      const item = field.listKind === "message" ? messageCheck(field.message) : field.scalar === ScalarType.STRING ? stringCheck : undefined;
      return (value) => {
        const list = value as readonly unknown[];
        if (list.length > maxItems) return { path: "", problem: `must have at most ${maxItems} items` };
        if (!item) return undefined;
        for (let i = 0; i < list.length; i++) {
          const found = item(list[i]);
          if (found) return { path: `[${i}]${found.path}`, problem: found.problem };
        }
        return undefined;
      };
    }
    case "map": {
      const keyIsString = field.mapKey === ScalarType.STRING;
      const item = field.mapKind === "message" ? messageCheck(field.message) : field.scalar === ScalarType.STRING ? stringCheck : undefined;
      return (value) => {
        const keys = Object.keys(value as Fields);
        if (keys.length > maxItems) return { path: "", problem: `must have at most ${maxItems} entries` };
        for (const key of keys) {
          // The key is not put in the path until it is known to be short.
          const keyProblem = keyIsString ? stringProblem(key) : undefined;
          if (keyProblem) return { path: "", problem: `keys ${keyProblem}` };
          const found = item?.((value as Fields)[key]);
          if (found) return { path: `[${key}]${found.path}`, problem: found.problem };
        }
        return undefined;
      };
    }
  }
}

/** The check of a message value, if its type has anything to check. */
function messageCheck(desc: DescMessage): FieldPlan["check"] | undefined {
  const plan = planFor(desc);
  if (!matters(plan)) return undefined;
  return (value) => {
    const found = findViolation(plan, value as Fields);
    return found && { path: `.${found.path}`, problem: found.problem };
  };
}

const atField = (problem: string | undefined): Violation | undefined => (problem ? { path: "", problem } : undefined);

/** The first violation in `message`, with a path from its own fields, e.g. "items[2].sku". */
function findViolation(plan: MessagePlan, message: Fields): Violation | undefined {
  for (const field of plan.fields) {
    let value: unknown;
    if (field.oneof) {
      const group = message[field.oneof] as { case?: string; value?: unknown };
      if (group.case !== field.localName) continue;
      value = group.value;
    } else {
      value = message[field.localName];
    }
    if (value === undefined) continue;
    const found = field.check(value);
    if (found) return { path: `${field.name}${found.path}`, problem: found.problem };
  }
  return undefined;
}

/** Why `value` breaks the string limits, or undefined if it keeps them. */
function problemIn(value: string, maxLen: number): string | undefined {
  // UTF-16 length bounds the code point count from above, so only long strings are counted.
  if (value.length > maxLen && codePointsExceed(value, maxLen)) return `must be at most ${maxLen} characters`;
  if (value.includes("\u0000")) return "must not contain NUL characters";
  return undefined;
}

function codePointsExceed(value: string, max: number): boolean {
  let count = 0;
  for (const _ of value) if (++count > max) return true;
  return false;
}

const violationError = (found: Violation) => new ConnectError(`${found.path}: ${found.problem}`, Code.InvalidArgument);

async function* guardEach<T>(plan: MessagePlan, messages: AsyncIterable<T>): AsyncIterable<T> {
  for await (const message of messages) {
    const found = findViolation(plan, message as Fields);
    if (found) throw violationError(found);
    yield message;
  }
}
