import { readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { createSecureContext, type PeerCertificate, type SecureContext } from "node:tls";
import { identityOfCertificate, identityUri } from "./mesh-identity.js";
import type { Logger } from "../process/logger.js";
import { causeChain } from "../data/db-errors.js";

/** Where a process finds its mesh credentials: PEM files that cert-manager or `npm start` rotate. */
export interface MeshTlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface MeshCredentials {
  /** The current certificate, key and CA, as one context for servers and clients alike. */
  context(): SecureContext;
  /** The current PEMs, for a TLS server's options. */
  pem(): { cert: string; key: string; ca: string };
  /** Called after each rotation; returns the unsubscribe. */
  onRotate(listener: () => void): () => void;
  close(): void;
}

/** How often the files are read for a rotation; cert-manager renews hours before expiry. */
const DEFAULT_RELOAD_MS = 10_000;

interface Pem {
  cert: string;
  key: string;
  ca: string;
}

const contextOf = (pem: Pem) => createSecureContext({ cert: pem.cert, key: pem.key, ca: pem.ca, minVersion: "TLSv1.2" });

/**
 * Loads the process's certificate, key and CA, and re-reads them every `reloadMs`: a
 * rotated certificate takes effect for new connections without a restart, while open
 * connections keep the identity they authenticated with. A half-written rotation (a new
 * key beside the old certificate) fails to load and is simply tried again next time.
 */
export function loadMeshCredentials(files: MeshTlsFiles, options: { logger: Logger; reloadMs?: number }): MeshCredentials {
  const read = (file: string) => readFileSync(file, "utf8");
  let pem: Pem = { cert: read(files.certFile), key: read(files.keyFile), ca: read(files.caFile) };
  let context = contextOf(pem);
  const listeners = new Set<() => void>();
  const reload = async () => {
    try {
      const [cert, key, ca] = await Promise.all([readFile(files.certFile, "utf8"), readFile(files.keyFile, "utf8"), readFile(files.caFile, "utf8")]);
      if (cert === pem.cert && key === pem.key && ca === pem.ca) return;
      const next = { cert, key, ca };
      context = contextOf(next);
      pem = next;
      options.logger.info("mesh certificate rotated");
      for (const listener of listeners) listener();
    } catch (err) {
      options.logger.debug({ err }, "mesh certificate not reloaded; trying again later");
    }
  };
  const timer = setInterval(() => void reload(), options.reloadMs ?? DEFAULT_RELOAD_MS);
  timer.unref();
  return {
    context: () => context,
    pem: () => pem,
    onRotate: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: () => clearInterval(timer),
  };
}

/** A server that is not the workload the caller meant to reach. */
class PeerIdentityError extends Error {
  override readonly name = "PeerIdentityError";
}

/**
 * Node's check of a server certificate, replaced by the one that matters in the mesh: the
 * server must be the workload the caller meant to reach, spiffe://meshwork/<expected>. A
 * registry entry pointing elsewhere cannot impersonate it, whatever its DNS names say.
 */
export function expectIdentity(expected: string) {
  return (_hostname: string, cert: PeerCertificate): Error | undefined => {
    const found = identityOfCertificate(cert);
    if (found === expected) return undefined;
    return new PeerIdentityError(`expected the server to be ${identityUri(expected)}, but its certificate names ${found ? identityUri(found) : "no mesh identity"}`);
  };
}

/** OpenSSL's verdicts on a server's certificate chain (a foreign CA, a self-signed or expired certificate). */
const CERTIFICATE_REFUSED = /^(UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO_SELF_SIGNED|CERT_|INVALID_PURPOSE|ERR_TLS_CERT)/;

/**
 * Whether a call failed because the server is not who the caller meant: the wrong identity,
 * or a certificate the mesh CA did not issue. That is the address's fault, not the
 * service's: say a stale or poisoned registry entry.
 */
export function isPeerRefused(err: unknown): boolean {
  for (const cause of causeChain(err)) {
    if (cause instanceof PeerIdentityError) return true;
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code === "string" && CERTIFICATE_REFUSED.test(code)) return true;
  }
  return false;
}
