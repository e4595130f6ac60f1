/**
 * The old shop's own catalog, seeded into an empty table at first start. The SKUs, titles
 * and prices are the demo catalog the mesh's inventory stocks (a test compares the two), so
 * the strangler fig starts from one catalog with two owners' copies; the blurbs are the old
 * shop's alone. Kept here, not imported: the legacy app shares no code with the mesh.
 */
export interface SeedProduct {
  sku: string;
  title: string;
  blurb: string;
  /** A decimal string, as the old shop's API and its numeric(12,2) column have it. */
  price: string;
  currency: string;
}

export const seedProducts: readonly SeedProduct[] = [
  { sku: "MW-MUG-001", title: "Meshwork mug", blurb: "A stoneware mug that holds a whole incident review's worth of coffee.", price: "12.99", currency: "USD" },
  { sku: "MW-TEE-002", title: "Circuit breaker t-shirt", blurb: "Soft cotton that trips open before you overheat.", price: "24.99", currency: "USD" },
  { sku: "MW-STK-003", title: "Saga sticker pack", blurb: "Ten stickers, each one a compensating action for a bare laptop lid.", price: "4.99", currency: "USD" },
  { sku: "MW-HOD-004", title: "Outbox hoodie", blurb: "A heavy hoodie that delivers warmth at least once.", price: "59.99", currency: "USD" },
  { sku: "MW-BTL-005", title: "Bulkhead bottle", blurb: "A steel bottle with compartments, so one leak never sinks the rest.", price: "18.99", currency: "USD" },
  { sku: "MW-LMP-006", title: "Limited edition lamp", blurb: "A desk lamp made in a run so small it is nearly always sold out.", price: "89.99", currency: "USD" },
];
