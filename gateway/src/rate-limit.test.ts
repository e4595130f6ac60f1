import { describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { StorefrontService } from "#gen/shop/gateway/v1/storefront_service_pb.js";
import { createAuthenticator, createAuthInterceptor, customerKey } from "./auth.js";
import { createRateLimitInterceptor } from "./rate-limit.js";
import { anonymousMethods } from "./routes.js";

const limit = { perSecond: 1, burst: 5 };
const authenticator = createAuthenticator({ mode: "local", secret: "a test secret of at least 32 characters" });

/**
 * The gateway's public chain (build.ts) in front of a ListProducts that records the customer
 * it sees; every call comes from the one (default) client address.
 */
function storefront() {
  const customers: string[] = [];
  const transport = createRouterTransport(
    ({ service }) =>
      service(StorefrontService, {
        listProducts: (_req, ctx) => {
          customers.push(ctx.values.get(customerKey));
          return {};
        },
      }),
    {
      router: {
        interceptors: [
          createRateLimitInterceptor(StorefrontService, { perSecond: limit.perSecond * 10, burst: limit.burst * 10, by: "address" }),
          createAuthInterceptor(authenticator, StorefrontService, anonymousMethods),
          createRateLimitInterceptor(StorefrontService, { ...limit, by: "client" }),
        ],
      },
    },
  );
  return { client: createClient(StorefrontService, transport), customers };
}

/** How many of `calls` ListProducts calls, made one after another, were taken before RESOURCE_EXHAUSTED. */
async function takenOf(calls: number, tokenFor: (call: number) => Promise<string | undefined>) {
  const { client, customers } = storefront();
  const codes: (Code | "ok")[] = [];
  for (let call = 0; call < calls; call++) {
    const token = await tokenFor(call);
    codes.push(await client.listProducts({}, token ? { headers: { authorization: `Bearer ${token}` } } : {}).then(() => "ok" as const, (err: unknown) => ConnectError.from(err).code));
  }
  return { taken: codes.filter((code) => code === "ok").length, refused: codes.filter((code) => code === Code.ResourceExhausted).length, customers };
}

describe("the rate limit of open methods", () => {
  it("counts by client address even with a token, so rotating demo tokens buys no more ListProducts calls", async () => {
    const anonymous = await takenOf(20, async () => undefined);
    expect(anonymous).toMatchObject({ taken: limit.burst, refused: 20 - limit.burst });
    const rotating = await takenOf(20, async (call) => (await authenticator.issue!(`shopper${call}`)).token);
    expect(rotating).toMatchObject({ taken: anonymous.taken, refused: 20 - anonymous.taken });
    // The customer is still known, for the canary's sticky key.
    expect(rotating.customers).toEqual(Array.from({ length: limit.burst }, (_, call) => `shopper${call}`));
  });
});
