import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { loadConsoleAssets, operatorPage, storefrontPage, type ConsolePage } from "./console-assets.js";

describe("the console's assets", () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  async function serve(page: ConsolePage): Promise<string> {
    const handler = await loadConsoleAssets(page);
    server = createServer(handler);
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  for (const page of [operatorPage, storefrontPage]) {
    it(`serves ${page.html}, its script and its 404s with a content security policy, no sniffing and no referrer`, async () => {
      const url = await serve(page);
      for (const [path, status] of [["/", 200], [`/${page.script}.js`, 200], ["/elsewhere", 404]] as const) {
        const res = await fetch(`${url}${path}`);
        expect(res.status).toBe(status);
        expect(res.headers.get("content-security-policy")).toBe("default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
        expect(res.headers.get("x-content-type-options")).toBe("nosniff");
        expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      }
    });
  }
});
