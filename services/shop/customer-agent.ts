import type { MeshServiceName } from "#mesh";

/**
 * The deployable that acts for customers: the public edge, which verifies their tokens and
 * names the customer to the services it calls (CUSTOMER_HEADER). The services' mesh ports
 * believe that name from it alone.
 */
export const customerAgent: MeshServiceName = "gateway";
