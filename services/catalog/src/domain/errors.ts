import { DomainError } from "#platform/domain/errors.js";

/** Catalog's domain errors; `kind` is mapped to a status code at the RPC edge. Bad input is the kit's InvalidArgumentError. */
export class RequestReusedError extends DomainError {
  override readonly name = "RequestReusedError";
  readonly kind = "already_exists";
  override readonly field = "request_id";
  constructor() {
    super("request_id: already used for a different item");
  }
}
