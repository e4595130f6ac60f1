import { Code, ConnectError } from "@connectrpc/connect";

/**
 * A call to a backend made with the console's certificate, with the backend's refusal of that
 * certificate made FAILED_PRECONDITION: UNAUTHENTICATED and PERMISSION_DENIED are the operator
 * listener's own answers about the signed-in operator (the page signs out on them), and a
 * misconfigured backend certificate says nothing about the operator's token.
 */
export async function fromBackend<T>(backend: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const error = ConnectError.from(err);
    if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied) {
      throw new ConnectError(`${backend} refused the console's certificate: ${error.rawMessage}`, Code.FailedPrecondition, undefined, undefined, error);
    }
    throw err;
  }
}
