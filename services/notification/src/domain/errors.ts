/** Notification's domain errors; `kind` is mapped to a status code at the RPC edge. */
export class InvalidNotificationQueryError extends Error {
  override readonly name = "InvalidNotificationQueryError";
  readonly kind = "invalid_argument";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}
