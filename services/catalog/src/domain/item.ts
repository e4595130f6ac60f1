import { requirePresent } from "#platform/domain/input.js";

export interface CreateItemCommand {
  requestId: string;
  description: string;
}

/** A CreateItem request as a command. Lengths need no check here: the contract's limits were enforced before any handler ran. */
export function validateCreateItem(request: CreateItemCommand): CreateItemCommand {
  return { requestId: requirePresent(request.requestId, "request_id"), description: requirePresent(request.description, "description") };
}

/** A request_id replayed with a different description is a client bug, not a retry. */
export const isSameItem = (existing: CreateItemCommand, command: CreateItemCommand) => existing.description === command.description;
