export type NotificationKind = "order_confirmed" | "order_cancelled";

/** The text a customer would receive, written once, when the event arrives. */
export function notificationText(kind: NotificationKind, orderId: string, detail: { totalMinor?: number; currency?: string; reason?: string }): string {
  const shortId = orderId.slice(0, 8);
  if (kind === "order_confirmed") {
    const total = detail.totalMinor !== undefined && detail.currency ? ` Total: ${(detail.totalMinor / 100).toFixed(2)} ${detail.currency}.` : "";
    return `Your order ${shortId} is confirmed.${total}`;
  }
  return `Your order ${shortId} was cancelled${detail.reason ? `: ${detail.reason}` : ""}.`;
}
