/**
 * The container's entry point: `run-service.ts <name>` starts one deployable, so a single
 * image serves every service (`docker run meshwork order`).
 */
const entries: Record<string, string> = {
  order: "../services/order/main.js",
  inventory: "../services/inventory/main.js",
  payment: "../services/payment/main.js",
  notification: "../services/notification/main.js",
  gateway: "../gateway/main.js",
};

const name = process.argv[2] ?? "";
const entry = entries[name];
if (!entry) {
  console.error(`usage: run-service.ts <${Object.keys(entries).join("|")}>`);
  process.exit(2);
}
await import(entry);
