import { X509Certificate, createPrivateKey } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { checkServerIdentity, connect, createServer } from "node:tls";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  certificateNotAfter,
  createCertificateAuthority,
  loadOrCreateCertificateAuthority,
  startCertificateRotation,
  writeCredentials,
} from "./pki.js";

// Passthrough, recorded: the order in which writeCredentials publishes the key and the certificate.
vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  return { ...actual, renameSync: vi.fn(actual.renameSync) };
});

type Credentials = { certPem: string; keyPem: string };

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "meshwork-pki-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function rotate(options: Parameters<typeof startCertificateRotation>[0]) {
  const rotation = startCertificateRotation(options);
  cleanups.push(() => rotation.stop());
  return rotation;
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

/**
 * One mutual-TLS exchange on 127.0.0.1: the server demands a client certificate signed by `ca` and answers
 * "accepted"; the client verifies the server against `ca` for `servername` (or, without one, for 127.0.0.1).
 */
async function exchange(options: { server: Credentials; client: Credentials; ca: string; servername?: string }) {
  let peerSan: string | undefined;
  const server = createServer(
    { cert: options.server.certPem, key: options.server.keyPem, ca: options.ca, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      peerSan = socket.getPeerCertificate().subjectaltname;
      socket.end("accepted");
    },
  );
  const serverError = new Promise<Error>((resolve) => server.once("tlsClientError", resolve));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect({
        host: "127.0.0.1",
        port,
        ca: options.ca,
        cert: options.client.certPem,
        key: options.client.keyPem,
        servername: options.servername,
      });
      let data = "";
      socket.setEncoding("utf8");
      socket.setTimeout(5_000, () => socket.destroy(new Error("TLS exchange timed out")));
      socket.on("data", (chunk: string) => (data += chunk));
      socket.on("error", reject);
      socket.on("close", () => resolve(data));
    }).catch((error: Error) => error);
    // The server's verdict on the client may be reported after the client saw the alert.
    const serverVerdict = typeof reply === "string" && reply === "accepted" ? undefined : await Promise.race([serverError, sleep(2_000)]);
    return { reply, peerSan, serverError: serverVerdict };
  } finally {
    server.close();
  }
}

describe("development PKI", () => {
  it("issued certificates complete mutual TLS, carry the SPIFFE URI and verify for localhost, 127.0.0.1 and ::1", async () => {
    const ca = await createCertificateAuthority();
    const inventory = await ca.issue("inventory");
    const order = await ca.issue("order");

    const byName = await exchange({ server: inventory, client: order, ca: ca.certPem, servername: "localhost" });
    expect(byName.reply).toBe("accepted");
    expect(byName.peerSan?.split(", ")).toContain("URI:spiffe://meshwork/order");

    const byAddress = await exchange({ server: inventory, client: order, ca: ca.certPem });
    expect(byAddress.reply).toBe("accepted");

    // No IPv6 listener is assumed on the test host: check the ::1 SAN the way the client would.
    const legacy = new X509Certificate(inventory.certPem).toLegacyObject();
    expect(checkServerIdentity("::1", legacy)).toBeUndefined();
    expect(checkServerIdentity("example.com", legacy)).toBeInstanceOf(Error);
  });

  it("a server rejects a client certificate from another CA", async () => {
    const ca = await createCertificateAuthority();
    const stranger = await (await createCertificateAuthority()).issue("order");
    const result = await exchange({ server: await ca.issue("inventory"), client: stranger, ca: ca.certPem, servername: "localhost" });
    expect(result.reply).not.toBe("accepted");
    expect(result.peerSan).toBeUndefined();
    expect(result.serverError).toBeInstanceOf(Error);
  });

  it("a client-only (operator) certificate works as a client but a client refuses it as a server", async () => {
    const ca = await createCertificateAuthority();
    const operator = await ca.issue("operator", { clientOnly: true });
    const order = await ca.issue("order");

    const asClient = await exchange({ server: await ca.issue("inventory"), client: operator, ca: ca.certPem, servername: "localhost" });
    expect(asClient.reply).toBe("accepted");
    expect(asClient.peerSan?.split(", ")).toContain("URI:spiffe://meshwork/operator");

    const asServer = await exchange({ server: operator, client: order, ca: ca.certPem, servername: "localhost" });
    // OpenSSL checks the extended key usage: a certificate without serverAuth cannot serve.
    expect(asServer.reply).toMatchObject({ code: "INVALID_PURPOSE", message: "unsuitable certificate purpose" });

    const eku = new x509.X509Certificate(operator.certPem).getExtension(x509.ExtendedKeyUsageExtension);
    expect(eku?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth]);
  });

  it("certificates have the leaf and CA profile the mesh relies on", async () => {
    const ca = await createCertificateAuthority();
    const before = Date.now();
    const leafPem = (await ca.issue("payment")).certPem;
    const leaf = new x509.X509Certificate(leafPem);
    const root = new x509.X509Certificate(ca.certPem);

    expect(leaf.subject).toBe("CN=payment");
    expect(leaf.issuer).toBe("CN=Meshwork development CA");
    expect(leaf.serialNumber).toMatch(/^[4-7][0-9a-f]{31}$/);
    expect(before - leaf.notBefore.getTime()).toBeGreaterThanOrEqual(5 * 60_000 - 1_000);
    expect(leaf.notAfter.getTime() - before).toBeGreaterThan(24 * 3_600_000 - 2_000);
    const constraints = leaf.getExtension(x509.BasicConstraintsExtension);
    expect([constraints?.ca, constraints?.critical]).toEqual([false, true]);
    const usage = leaf.getExtension(x509.KeyUsagesExtension);
    expect([usage?.usages, usage?.critical]).toEqual([x509.KeyUsageFlags.digitalSignature, true]);
    expect(leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
    const names = leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON();
    expect(names).toEqual([
      { type: "url", value: "spiffe://meshwork/payment" },
      { type: "dns", value: "localhost" },
      { type: "ip", value: "127.0.0.1" },
      { type: "ip", value: "::1" },
    ]);
    expect(leaf.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(
      root.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    );
    expect(leaf.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/);

    const rootConstraints = root.getExtension(x509.BasicConstraintsExtension);
    expect([rootConstraints?.ca, rootConstraints?.pathLength, rootConstraints?.critical]).toEqual([true, 0, true]);
    expect(root.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(root.notAfter.getTime() - before).toBeGreaterThan(364 * 86_400_000);
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  it("loadOrCreate keeps a good CA, and replaces one that expires within 7 days or whose key does not match", async () => {
    const dir = join(tempDir(), "pki");
    const first = await loadOrCreateCertificateAuthority(dir);
    expect(first.replaced).toBe(false);
    expect([mode(dir), mode(join(dir, "ca.key")), mode(join(dir, "ca.crt"))]).toEqual([0o700, 0o600, 0o644]);

    const again = await loadOrCreateCertificateAuthority(dir);
    expect(again.replaced).toBe(false);
    expect(again.certPem).toBe(first.certPem);
    // The reloaded key is the CA's: what it issues verifies against the original CA certificate.
    const leaf = new X509Certificate((await again.issue("order")).certPem);
    expect(leaf.verify(new X509Certificate(first.certPem).publicKey)).toBe(true);

    const expiring = await createCertificateAuthority({ lifetimeMs: 86_400_000 });
    plantCa(dir, expiring);
    const renewed = await loadOrCreateCertificateAuthority(dir);
    expect(renewed.replaced).toBe(true);
    expect(renewed.certPem).not.toBe(expiring.certPem);
    expect(certificateNotAfter(renewed.certPem).getTime() - Date.now()).toBeGreaterThan(364 * 86_400_000);
    expect(readFileSync(join(dir, "ca.crt"), "utf8")).toBe(renewed.certPem);

    const foreignKey = (await createCertificateAuthority()).keyPem;
    plantCa(dir, { certPem: renewed.certPem, keyPem: foreignKey });
    const repaired = await loadOrCreateCertificateAuthority(dir);
    expect(repaired.replaced).toBe(true);
    expect(repaired.certPem).not.toBe(renewed.certPem);
  });

  it("writeCredentials publishes the key before the certificate, with modes 0600/0644 and no temp files left", async () => {
    const ca = await createCertificateAuthority();
    const dir = tempDir();
    vi.mocked(renameSync).mockClear();
    const files = writeCredentials(dir, "order", await ca.issue("order"));
    expect(files).toEqual({ certFile: join(dir, "order.crt"), keyFile: join(dir, "order.key") });
    expect(vi.mocked(renameSync).mock.calls.map(([, to]) => basename(String(to)))).toEqual(["order.key", "order.crt"]);
    expect([mode(files.keyFile), mode(files.certFile)]).toEqual([0o600, 0o644]);
    expect(readdirSync(dir).sort()).toEqual(["order.crt", "order.key"]);
  });

  it("rotation reissues a certificate before it expires, and stop() stops it", async () => {
    const ca = await createCertificateAuthority();
    const dir = tempDir();
    const certFile = join(dir, "order.crt");
    const rotated: string[] = [];
    const rotation = rotate({
      dir,
      ca,
      identities: ["order", "operator"],
      lifetimeMs: 3_000,
      clientOnly: new Set(["operator"]),
      onRotated: (identity) => rotated.push(identity),
    });
    await rotation.ready;
    const first = readFileSync(certFile, "utf8");
    const firstNotAfter = certificateNotAfter(first).getTime();

    const next = await waitFor(() => {
      const pem = readFileSync(certFile, "utf8");
      return pem === first ? undefined : { pem, at: Date.now() };
    }, firstNotAfter + 1_000 - Date.now());
    expect(next.at).toBeLessThan(firstNotAfter);
    expect(certificateNotAfter(next.pem).getTime()).toBeGreaterThan(firstNotAfter);
    expect(new X509Certificate(next.pem).checkPrivateKey(createPrivateKey(readFileSync(join(dir, "order.key"))))).toBe(true);
    expect(rotated).toContain("order");
    const operatorEku = new x509.X509Certificate(readFileSync(join(dir, "operator.crt"), "utf8")).getExtension(
      x509.ExtendedKeyUsageExtension,
    );
    expect(operatorEku?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth]);

    rotation.stop();
    const frozen = readFileSync(certFile, "utf8");
    // A running rotation would have replaced this certificate before it expired.
    await sleep(certificateNotAfter(frozen).getTime() + 500 - Date.now());
    expect(readFileSync(certFile, "utf8")).toBe(frozen);
  });

  it("rotation reissues a deleted certificate and one issued by another CA", async () => {
    const ca = await createCertificateAuthority();
    const dir = tempDir();
    const lines: string[] = [];
    // 6 s lifetimes: checks every second, while lifetime-based reissue is at least 3 s away.
    const rotation = rotate({ dir, ca, identities: ["order", "payment"], lifetimeMs: 6_000, log: (line) => lines.push(line) });
    await rotation.ready;
    unlinkSync(join(dir, "order.crt"));
    writeCredentials(dir, "payment", await (await createCertificateAuthority()).issue("payment"));
    const caKey = new X509Certificate(ca.certPem).publicKey;

    await waitFor(() => {
      if (!existsSync(join(dir, "order.crt"))) return undefined;
      return new X509Certificate(readFileSync(join(dir, "payment.crt"))).verify(caKey) || undefined;
    }, 2_500);
    expect(lines.some((line) => line.includes("payment") && line.includes("another CA"))).toBe(true);
  });

  it("rejects identities that are not a lowercase name (or are the CA's file name)", async () => {
    const ca = await createCertificateAuthority();
    for (const identity of ["Order", "-order", "", "a".repeat(64), "../etc", "order.x", "ca"]) {
      await expect(ca.issue(identity), identity).rejects.toThrow(/invalid mesh identity/);
    }
    await expect(ca.issue("a".repeat(63))).resolves.toHaveProperty("certPem");
    const credentials = await ca.issue("order");
    expect(() => writeCredentials(tempDir(), "../order", credentials)).toThrow(/invalid mesh identity/);
    expect(() => rotate({ dir: tempDir(), ca, identities: ["order", "Gateway"], lifetimeMs: 60_000 })).toThrow(
      /invalid mesh identity/,
    );
  });
});

/** Puts a CA's files where loadOrCreate looks (writeCredentials refuses the name "ca"). */
function plantCa(dir: string, credentials: Credentials): void {
  writeFileSync(join(dir, "ca.key"), credentials.keyPem);
  writeFileSync(join(dir, "ca.crt"), credentials.certPem);
}

/** Polls `probe` every 50 ms until it returns a value; throws after `timeoutMs`. */
async function waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}
