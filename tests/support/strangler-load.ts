import { readFileSync } from "node:fs";
import { request } from "node:https";
import { ConnectError } from "@connectrpc/connect";
import { expectIdentity } from "#platform/trust/mesh-tls.js";
import type { MeshPki } from "#tools/mesh/mesh-pki.js";

/** One call a load loop made that did not succeed, as the failure message shows it. */
export interface FailedCall {
  loop: string;
  call: number;
  code: string;
  message: string;
}

export interface LoadBounds {
  /** At most this many calls per loop. */
  maxCalls: number;
  /** No call starts after this time (ms since the epoch). */
  deadline: number;
  /** The pause between one loop's calls. */
  pauseMs: number;
}

/**
 * Bounded load: loops of one call at a time each, which stop at stop(), at their call cap or
 * at the deadline, whichever comes first. Every call's outcome is counted; a failure is kept
 * with its code, so the test can assert there are none and show them if there are.
 */
export function startLoad(loops: Record<string, (call: number) => Promise<void>>, bounds: LoadBounds) {
  const calls: Record<string, number> = {};
  const failures: FailedCall[] = [];
  let stopping = false;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const running = Object.entries(loops).map(async ([loop, callOnce]) => {
    calls[loop] = 0;
    for (let call = 0; !stopping && call < bounds.maxCalls && Date.now() < bounds.deadline; call++) {
      try {
        await callOnce(call);
      } catch (err) {
        const e = err instanceof ConnectError ? { code: String(err.code), message: err.rawMessage } : { code: "thrown", message: String(err) };
        failures.push({ loop, call, ...e });
      }
      calls[loop]!++;
      await sleep(bounds.pauseMs);
    }
  });
  return {
    calls,
    failures,
    /** Whether every loop is still going (none has reached its cap or the deadline). */
    running: () => !stopping && Date.now() < bounds.deadline && Object.values(calls).every((n) => n < bounds.maxCalls),
    async stop() {
      stopping = true;
      await Promise.all(running);
    },
  };
}

export interface LegacyProduct {
  sku: string;
  title: string;
  blurb: string;
  price: string;
  currency: string;
}

/**
 * A client of the old shop's JSON API over HTTPS/1.1, presenting the operator's mesh
 * certificate (the one writer the old shop admits), one connection per call so that no
 * idle keep-alive socket closing under a call is ever mistaken for the old shop failing.
 */
export function oldShopClient(baseUrl: string, pki: MeshPki) {
  const tls = { ca: readFileSync(pki.operator.caFile), cert: readFileSync(pki.operator.certFile), key: readFileSync(pki.operator.keyFile), checkServerIdentity: expectIdentity("oldshop") };
  function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, baseUrl),
        { method, ...tls, agent: false, timeout: 10_000, headers: payload === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            resolve({ status: res.statusCode!, body: text ? (JSON.parse(text) as unknown) : undefined });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer within 10 s`)));
      req.on("error", reject);
      req.end(payload);
    });
  }
  const expectOk = (what: string, answer: { status: number; body: unknown }) => {
    if (answer.status !== 200) throw new Error(`${what}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  };
  return {
    async list(): Promise<LegacyProduct[]> {
      return (expectOk("GET /api/products", await call("GET", "/api/products")) as { products: LegacyProduct[] }).products;
    },
    async put(product: LegacyProduct): Promise<LegacyProduct> {
      const { sku, ...change } = product;
      return expectOk(`PUT /api/products/${sku}`, await call("PUT", `/api/products/${encodeURIComponent(sku)}`, change)) as LegacyProduct;
    },
  };
}

/** Minor units as the old shop's decimal string: 1299 -> "12.99". */
export const legacyPrice = (minor: number) => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, "0")}`;

/** A Postgres LSN ("16/B374D848") as a number, to compare positions. */
export const lsnValue = (lsn: string) => {
  const [high, low] = lsn.split("/");
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
};
