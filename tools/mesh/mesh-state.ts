import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import type { Env } from "#platform/process/config.js";
import { expectIdentity } from "#platform/trust/mesh-tls.js";

/** Where an operator's credentials are: the PEM files `npm start` writes under .data/pki. */
export interface OperatorFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * What tools need to find a running mesh: each service's mesh address, NATS without
 * credentials, and the operator's files. `npm start` writes it; `npm run saga` and
 * `npm run dlq` read it, so nothing falls back to a well-known port that someone else
 * might be listening on.
 */
export interface MeshState {
  services: Record<string, { url: string; opsUrl: string }>;
  natsUrl: string;
  operator: OperatorFiles;
  /** The file holding the operator's NATS password. */
  operatorNatsPasswordFile: string;
}

export const defaultMeshStateFile = (dataDir: string) => join(dataDir, "mesh.json");

export function writeMeshState(file: string, state: MeshState): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
}

/** The state file MESH_STATE_FILE names, else `fallback`; a clear error if no mesh wrote one. */
export function readMeshState(env: Env, fallback: string): MeshState {
  const file = env["MESH_STATE_FILE"] || fallback;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as MeshState;
  } catch (err) {
    throw new Error(`no running mesh found (${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); start one with \`npm start\``);
  }
}

/**
 * A Connect transport that calls one service as the operator: it presents the operator
 * certificate and accepts only a server that is spiffe://meshwork/<peer>.
 */
export function operatorTransport(baseUrl: string, peer: string, files: OperatorFiles): { transport: Transport; close(): void } {
  const sessionManager = new Http2SessionManager(baseUrl, undefined, {
    ca: readFileSync(files.caFile),
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
    checkServerIdentity: expectIdentity(peer),
  });
  return { transport: createConnectTransport({ baseUrl, httpVersion: "2", sessionManager }), close: () => sessionManager.abort() };
}
