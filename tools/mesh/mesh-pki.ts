import { join } from "node:path";
import type { MeshTlsFiles } from "#platform/trust/mesh-tls.js";
import type { OperatorFiles } from "./mesh-state.js";
import { OPERATOR } from "#platform/trust/mesh-identity.js";
import { meshServiceNames } from "#mesh";
import { loadOrCreateCertificateAuthority, startCertificateRotation } from "../infra/pki.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";

/** A day: long enough to outlive a coffee break, short enough that a leaked key soon expires; re-issued with a third left. */
export const DEFAULT_CERT_LIFETIME_MS = 24 * 3_600_000;

export interface MeshPki {
  /** A deployable's certificate, key and the CA, as its TLS_* variables name them. */
  files(name: string): MeshTlsFiles;
  readonly operator: OperatorFiles;
  /** The operator console's backend's (spiffe://meshwork/console), which only the gateway is handed. */
  readonly console: MeshTlsFiles;
  stop(): void;
}

/**
 * The local mesh's PKI in `dir`: the CA (kept, so tools trust it across restarts), and a
 * certificate for every deployable, the operator and the console's backend (the two clients
 * only), re-issued hot before it expires. Only
 * this process, the launcher, holds the CA key's use: services are handed their own files
 * and never issue certificates.
 */
export async function startMeshPki(dir: string, options: { lifetimeMs: number; log?: (line: string) => void }): Promise<MeshPki> {
  const ca = await loadOrCreateCertificateAuthority(dir);
  if (ca.replaced) options.log?.(`the mesh CA in ${dir} was missing, expiring or unreadable: a new one was made`);
  const rotation = startCertificateRotation({
    dir,
    ca,
    identities: [...meshServiceNames, OPERATOR, CONSOLE],
    clientOnly: new Set([OPERATOR, CONSOLE]),
    lifetimeMs: options.lifetimeMs,
    ...(options.log ? { log: options.log } : {}),
  });
  await rotation.ready;
  const caFile = join(dir, "ca.crt");
  const files = (name: string) => ({ certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`), caFile });
  return { files, operator: files(OPERATOR), console: files(CONSOLE), stop: () => rotation.stop() };
}
