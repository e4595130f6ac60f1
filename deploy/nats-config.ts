/**
 * Writes the nats-server configs deploy/ runs, with the users and permissions `npm start` gives
 * its own server (meshNatsUsers over the manifest): k8s/base/nats/nats.conf, for the
 * three-server cluster, and nats.conf, for compose's single server. deploy/generate-deploy.ts
 * writes them with the rest of deploy/.
 */
import { meshNatsUsers, natsServerConfig } from "#tools/infra/nats-accounts.js";
import { meshNative } from "./legacy-deployables.js";

/** The servers of the k8s StatefulSet, which find each other through the headless nats-cluster Service. */
const K8S_NATS_SERVERS = 3;

/**
 * Cluster settings appended to the shared config. The route port takes no password: the nats
 * NetworkPolicy admits only the NATS pods to it.
 */
const clusterSettings = [
  "# The k8s StatefulSet's cluster: each pod is named by its POD_NAME.",
  "server_name: $POD_NAME",
  "http_port: 8222",
  "cluster: {",
  "  name: meshwork",
  "  port: 6222",
  "  routes: [",
  ...Array.from({ length: K8S_NATS_SERVERS }, (_, i) => `    "nats://nats-${i}.nats-cluster:6222"`),
  "  ]",
  "}",
  "",
].join("\n");

/** Each config by its path under deploy/. */
export function natsConfigFiles(): Record<string, string> {
  const server = natsServerConfig({ host: "0.0.0.0", port: 4222, storeDir: "/data", users: meshNatsUsers(meshNative) });
  return { "k8s/base/nats/nats.conf": server + clusterSettings, "nats.conf": server };
}
