import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { JsonValue } from "@bufbuild/protobuf";

/** One field whose value differs; values are JSON, each cut to MAX_VALUE_CHARS. */
export interface FieldDifference {
  /** e.g. products[MW-MUG-001].price.minor_units, or products[MW-MUG-001] for an element one side lacks. */
  path: string;
  legacy: string;
  new: string;
}

export interface Comparison {
  /** At most MAX_DIFFERENCES, in field order. */
  differences: FieldDifference[];
  /** Differences beyond those listed. */
  more: number;
}

export interface CompareOptions {
  /** Field names (proto names) left out wherever they occur: volatile ones, such as `available`. */
  ignore?: readonly string[];
  /** Repeated message fields compared as sets keyed by one of their fields: { products: "sku" }. */
  keyBy?: Readonly<Record<string, string>>;
}

const MAX_DIFFERENCES = 10;
const MAX_VALUE_CHARS = 200;
/** What a side's value reads as where it has none. */
const ABSENT = "(absent)";

const show = (value: JsonValue | undefined) => (value === undefined ? ABSENT : JSON.stringify(value).slice(0, MAX_VALUE_CHARS));
const isObject = (value: JsonValue | undefined): value is { [k: string]: JsonValue } => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * The field-by-field differences between the legacy and the new side's answers, two
 * messages of one schema. Both are read as proto JSON with every field present (so an
 * unset field and its zero value compare equal, as on the wire), by proto field name, so a
 * path names the contract's fields. Repeated fields named in `keyBy` are matched by key, not
 * position: an element one side lacks is one difference at its key.
 */
export function compareMessages<Desc extends DescMessage>(schema: Desc, legacy: MessageShape<Desc>, candidate: MessageShape<Desc>, options: CompareOptions = {}): Comparison {
  const ignore = new Set(options.ignore ?? []);
  const keyBy = options.keyBy ?? {};
  const differences: FieldDifference[] = [];
  let more = 0;
  const differ = (path: string, a: JsonValue | undefined, b: JsonValue | undefined) => {
    if (differences.length < MAX_DIFFERENCES) differences.push({ path, legacy: show(a), new: show(b) });
    else more++;
  };
  const walk = (path: string, field: string, a: JsonValue | undefined, b: JsonValue | undefined): void => {
    if (a === undefined || b === undefined) {
      if (a !== b) differ(path, a, b);
      return;
    }
    if (isObject(a) && isObject(b)) {
      for (const name of new Set([...Object.keys(a), ...Object.keys(b)])) if (!ignore.has(name)) walk(path ? `${path}.${name}` : name, name, a[name], b[name]);
      return;
    }
    if (Array.isArray(a) && Array.isArray(b)) {
      const key = keyBy[field];
      if (key) {
        const byKey = (list: JsonValue[]) => new Map(list.map((element, i) => [isObject(element) && typeof element[key] === "string" ? element[key] : `#${i}`, element]));
        const [left, right] = [byKey(a), byKey(b)];
        for (const k of new Set([...left.keys(), ...right.keys()])) walk(`${path}[${k}]`, "", left.get(k), right.get(k));
      } else {
        for (let i = 0; i < Math.max(a.length, b.length); i++) walk(`${path}[${i}]`, "", a[i], b[i]);
      }
      return;
    }
    if (JSON.stringify(a) !== JSON.stringify(b)) differ(path, a, b);
  };
  const json = (message: MessageShape<Desc>) => toJson(schema, message, { useProtoFieldName: true, alwaysEmitImplicit: true });
  walk("", "", json(legacy), json(candidate));
  return { differences, more };
}
