import { ScalarType, type DescMessage } from "@bufbuild/protobuf";
import { isReflectList, isReflectMap, isReflectMessage, reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import type { Interceptor } from "@connectrpc/connect";
import { InvalidArgumentError } from "./errors.js";

/**
 * Rejects requests whose strings hold a NUL character. Protobuf allows it, but Postgres
 * text cannot store it and would fail the write deep inside a transaction; here the client
 * learns which field is wrong before any handler runs.
 */
export function createStringGuardInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) {
      const field = findNul(reflect(req.method.input as DescMessage, req.message), "");
      if (field) throw new InvalidArgumentError(field, "must not contain NUL characters");
    }
    return next(req);
  };
}

const hasNul = (value: unknown) => typeof value === "string" && value.includes("\u0000");

function findNul(message: ReflectMessage, prefix: string): string | undefined {
  for (const field of message.fields) {
    if (!message.isSet(field)) continue;
    const path = `${prefix}${field.name}`;
    const value = message.get(field);
    if (field.fieldKind === "scalar" && field.scalar === ScalarType.STRING && hasNul(value)) return path;
    if (isReflectMessage(value)) {
      const found = findNul(value, `${path}.`);
      if (found) return found;
    } else if (isReflectList(value)) {
      let i = 0;
      for (const item of value) {
        if (hasNul(item)) return `${path}[${i}]`;
        if (isReflectMessage(item)) {
          const found = findNul(item, `${path}[${i}].`);
          if (found) return found;
        }
        i++;
      }
    } else if (isReflectMap(value)) {
      for (const [key, item] of value) {
        if (hasNul(key) || hasNul(item)) return `${path}[${String(key)}]`;
        if (isReflectMessage(item)) {
          const found = findNul(item, `${path}[${String(key)}].`);
          if (found) return found;
        }
      }
    }
  }
  return undefined;
}
