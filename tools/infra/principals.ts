/**
 * The operator console's backend, in the gateway's operator listener: a principal of its own,
 * not the operator's. Its client-only certificate (spiffe://meshwork/console) is admitted
 * only by the saga admin RPCs the console calls, where it names the signed-in operator in
 * x-operator; its NATS user reads and replays SHOP_DLQ alone. The gateway, internet-facing,
 * holds these credentials and never the operator's.
 */
export const CONSOLE = "console";
