export interface CatalogEntry {
  sku: string;
  name: string;
  priceMinor: number;
  currency: string;
  initialStock: number;
}

/**
 * The demo catalog seeded at first start. The lamp is deliberately scarce so that an
 * out-of-stock order is easy to provoke from the console or curl.
 */
export const demoCatalog: readonly CatalogEntry[] = [
  { sku: "MW-MUG-001", name: "Meshwork mug", priceMinor: 1299, currency: "USD", initialStock: 500 },
  { sku: "MW-TEE-002", name: "Circuit breaker t-shirt", priceMinor: 2499, currency: "USD", initialStock: 300 },
  { sku: "MW-STK-003", name: "Saga sticker pack", priceMinor: 499, currency: "USD", initialStock: 1000 },
  { sku: "MW-HOD-004", name: "Outbox hoodie", priceMinor: 5999, currency: "USD", initialStock: 120 },
  { sku: "MW-BTL-005", name: "Bulkhead bottle", priceMinor: 1899, currency: "USD", initialStock: 250 },
  { sku: "MW-LMP-006", name: "Limited edition lamp", priceMinor: 8999, currency: "USD", initialStock: 3 },
];
