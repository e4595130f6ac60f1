/**
 * Renders what deploy/ says per deployable from the mesh manifest (services/mesh.ts), so that a
 * service is added to compose and kustomize by its manifest entry alone:
 *   npx tsx deploy/generate-deploy.ts
 * It writes each service's k8s/base/<name>.yaml whole (one template for all of them), the NATS
 * configs (nats-config.ts), and the generated regions of the files that are otherwise written by
 * hand: between a "begin generated: <region>" and an "end generated: <region>" comment. The
 * deploy test fails while any file differs from what this writes.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { meshDeployables, meshServices, urlVariable, withSchema, type Deployable } from "#mesh";
import { OPERATOR } from "#platform/trust/mesh-identity.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";
import { readContracts, type ContractReader } from "./contract-callers.js";
import { databasePasswordVariable } from "./generate-secrets.js";
import { natsConfigFiles } from "./nats-config.js";

const deployDir = import.meta.dirname;
/** The deployables that run as mesh services: all but the gateway, whose k8s file is its own. */
const services: readonly Deployable[] = meshServices;
/** NATS users: every deployable, the operator and the console's backend. */
const natsUsers = [...meshDeployables.map((d) => d.name), OPERATOR, CONSOLE];

const podSelector = (name: string) => `- podSelector: { matchLabels: { app.kubernetes.io/name: ${name} } }`;
const k8sUrl = (d: Pick<Deployable, "name" | "port">) => `https://${d.name}:${d.port.default}`;
/** Where a peer the manifest names is reached in the cluster and in compose. */
const peerUrl = (peer: string) => k8sUrl(meshDeployables.find((d) => d.name === peer)!);

/** Words wrapped into comment lines of at most `width` characters, each starting with `prefix`. */
function wrap(words: string, prefix: string, width = 100): string[] {
  const lines: string[] = [];
  let line = prefix;
  for (const word of words.split(" ")) {
    if (line.length + word.length + 1 > width && line !== prefix) {
      lines.push(line);
      line = prefix;
    }
    line += (line === prefix ? "" : " ") + word;
  }
  return [...lines, line];
}

/** One mesh service's ServiceAccount, Certificate, Deployment, Service, PodDisruptionBudget and NetworkPolicy. */
function serviceManifest(d: Deployable, contracts: ContractReader): string {
  const { name } = d;
  const port = d.port.default;
  const ops = d.opsPort.default;
  const labels = `{ app.kubernetes.io/name: ${name}, app.kubernetes.io/part-of: meshwork }`;
  const access = contracts(d);
  const peers = d.calls.flatMap((peer) => [`            - name: ${urlVariable(peer)}`, `              value: "${peerUrl(peer)}"`]);
  const database = [
    "            # Its own Postgres role, which owns only its schema (postgres-role.sql).",
    "            - name: DATABASE_PASSWORD",
    `              valueFrom: { secretKeyRef: { name: ${name}-db, key: password } }`,
    "            - name: DATABASE_URL",
    `              value: "postgres://${name}:$(DATABASE_PASSWORD)@postgres:5432/${name}"`,
  ];
  const admits = wrap(
    `The mesh port admits the callers ${name}'s contract names (${access.summary.join("; ") || "none"}); mTLS then checks each call's identity. Operators come through kubectl port-forward, which no NetworkPolicy sees.`,
    "    # ",
  );
  return `# ${name}: ServiceAccount, Certificate, Deployment, Service, PodDisruptionBudget and NetworkPolicy.
# Generated from services/mesh.ts by deploy/generate-deploy.ts: edit the template there, not this file.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ${name}
  labels: ${labels}
automountServiceAccountToken: false
---
# ${name}'s mesh identity, in the Secret ${name}-tls that only its pods mount. cert-manager renews it
# 8 h before it expires and rewrites the mounted files; the process re-reads them, no restart.
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: ${name}
  labels: ${labels}
spec:
  secretName: ${name}-tls
  issuerRef: { name: meshwork-ca, kind: Issuer, group: cert-manager.io }
  uris: ["spiffe://meshwork/${name}"]
  # Peers check the URI above; the names (namespace meshwork, as the overlay sets) are for tools
  # that check a host name.
  dnsNames: [${name}, ${name}.meshwork.svc, ${name}.meshwork.svc.cluster.local]
  duration: 24h
  renewBefore: 8h
  privateKey: { algorithm: ECDSA, size: 256, rotationPolicy: Always }
  usages: [digital signature, server auth, client auth]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  labels: ${labels}
spec:
  replicas: 2
  selector:
    matchLabels: { app.kubernetes.io/name: ${name} }
  template:
    metadata:
      labels: ${labels}
      annotations:
        # Scraped on the ops port, which serves /metrics in plaintext to the monitoring namespace.
        prometheus.io/scrape: "true"
        prometheus.io/port: "${ops}"
        prometheus.io/path: /metrics
    spec:
      serviceAccountName: ${name}
      terminationGracePeriodSeconds: 30
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 1000 # the group that may read the mounted key
        seccompProfile: { type: RuntimeDefault }
      containers:
        - name: ${name}
          image: meshwork:latest
          args: ["${name}"]
          ports:
            # The mesh port: mTLS, a client certificate from the mesh CA required.
            - name: rpc
              containerPort: ${port}
            # grpc.health.v1 alone and /metrics, plaintext, for kubelet and Prometheus.
            - name: ops
              containerPort: ${ops}
          env:
            - name: HOST
              value: "0.0.0.0"
            - name: POD_IP
              valueFrom: { fieldRef: { fieldPath: status.podIP } }
            # Announced in the service registry, so peers balance across pods directly.
            - name: ADVERTISE_URL
              value: "https://$(POD_IP):${port}"
            - name: SERVICE_VERSION
              value: "latest"
            - name: ${d.port.variable}
              value: "${port}"
            - name: OPS_PORT
              value: "${ops}"
            - name: MESH_TLS
              value: "on"
            - name: TLS_CERT_FILE
              value: /var/run/meshwork/tls/tls.crt
            - name: TLS_KEY_FILE
              value: /var/run/meshwork/tls/tls.key
            - name: TLS_CA_FILE
              value: /var/run/meshwork/tls/ca.crt
            # Its own NATS user; nats.yaml gives the server the same password.
            - name: NATS_PASSWORD
              valueFrom: { secretKeyRef: { name: ${name}-nats, key: password } }
            - name: NATS_URL
              value: "nats://${name}:$(NATS_PASSWORD)@nats:4222"
            - name: STREAM_REPLICAS
              value: "3"
            - name: LOG_LEVEL
              value: "info"
${[...peers, ...(d.schema ? database : [])].map((line) => `${line}\n`).join("")}          readinessProbe:
            grpc: { port: ${ops}, service: "readiness" }
            periodSeconds: 5
            failureThreshold: 3
          livenessProbe:
            grpc: { port: ${ops} }
            initialDelaySeconds: 10
            periodSeconds: 10
            failureThreshold: 3
          resources:
            requests: { cpu: 100m, memory: 160Mi }
            limits: { memory: 512Mi }
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: { drop: [ALL] }
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: tls
              mountPath: /var/run/meshwork/tls
              readOnly: true
      volumes:
        - name: tmp
          emptyDir: {}
        - name: tls
          # Only its own certificate and key; 288 is 0440, readable by fsGroup 1000.
          secret: { secretName: ${name}-tls, defaultMode: 288 }
---
apiVersion: v1
kind: Service
metadata:
  name: ${name}
  labels: ${labels}
spec:
  selector: { app.kubernetes.io/name: ${name} }
  ports:
    - name: grpc
      port: ${port}
      targetPort: rpc
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: ${name}
spec:
  minAvailable: 1
  selector:
    matchLabels: { app.kubernetes.io/name: ${name} }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: ${name}
spec:
  podSelector: { matchLabels: { app.kubernetes.io/name: ${name} } }
  policyTypes: [Ingress]
  ingress:
${admits.join("\n")}
    - ports: [{ protocol: TCP, port: ${port} }]${access.callers.length ? `\n      from:\n${access.callers.map((caller) => `        ${podSelector(caller)}`).join("\n")}` : "\n      from: []"}
    # The ops port admits Prometheus' namespace only.
    - ports: [{ protocol: TCP, port: ${ops} }]
      from:
        - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: monitoring } }
`;
}

/** One mesh service under compose: its own env file, certificate and ports, after what it needs. */
function composeService(d: Deployable): string[] {
  const env = [`<<: *env`, `${d.port.variable}: "${d.port.default}"`, `OPS_PORT: "${d.opsPort.default}"`, `ADVERTISE_URL: "${k8sUrl(d)}"`];
  for (const peer of d.calls) env.push(`${urlVariable(peer)}: "${peerUrl(peer)}"`);
  // A caller starts once its peers are healthy (and so Postgres' roles and NATS are there).
  const dependsOn = d.calls.length
    ? d.calls.map((peer) => `${peer}: { condition: service_healthy }`)
    : ["postgres-roles: { condition: service_completed_successfully }", "nats: { condition: service_healthy }"];
  return [
    `${d.name}:`,
    `  <<: *service`,
    `  command: ["${d.name}"]`,
    `  env_file: [.secrets/compose/${d.name}.env] # its own ${d.schema ? "DATABASE_URL and " : ""}NATS_URL`,
    `  environment: { ${env.join(", ")} }`,
    `  volumes: ["./.secrets/compose/pki/${d.name}:/var/run/meshwork/tls:ro"] # its own certificate and key`,
    `  healthcheck: *grpc-readiness`,
    `  depends_on: { ${dependsOn.join(", ")} }`,
  ];
}

/** The psql lines that give one service its role, database and schema (postgres-role.sql). */
const roleBlock = (d: Deployable) => [`\\getenv password ${databasePasswordVariable(d.name)}`, `\\set role ${d.name}`, `\\set db ${d.name}`, `\\set schema ${d.schema}`, `\\ir postgres-role.sql`];

/** Blocks of lines, a blank line between each two. */
const separated = (blocks: string[][]) => blocks.flatMap((block, i) => (i ? ["", ...block] : block));

/** A region's lines, by region name, for each file with generated regions (paths under deploy/). */
function regions(postgresInit: string): Record<string, Record<string, string[]>> {
  return {
    "compose.yaml": {
      services: separated(services.map(composeService)),
      "gateway peers": services.map((d) => `${urlVariable(d.name)}: "${k8sUrl(d)}",`),
      // The gateway reports every service's health: it starts once they all are healthy.
      "gateway depends on": [`depends_on: { ${services.map((d) => `${d.name}: { condition: service_healthy }`).join(", ")} }`],
    },
    "k8s/base/kustomization.yaml": { deployables: meshDeployables.map((d) => `- ${d.name}.yaml`) },
    "k8s/base/gateway.yaml": { peers: services.flatMap((d) => [`- name: ${urlVariable(d.name)}`, `  value: "${k8sUrl(d)}"`]) },
    "k8s/base/postgres.yaml": {
      clients: [...withSchema.map((d) => podSelector(d.name)), podSelector("postgres-roles")],
      // The ConfigMap holds the two scripts exactly as deploy/ has them.
      scripts: [
        "postgres-init.sql: |",
        ...postgresInit.trimEnd().split("\n").map((line) => (line ? `  ${line}` : "")),
        "postgres-role.sql: |",
        ...readFileSync(join(deployDir, "postgres-role.sql"), "utf8").trimEnd().split("\n").map((line) => (line ? `  ${line}` : "")),
      ],
      "role passwords": withSchema.flatMap((d) => [`- name: ${databasePasswordVariable(d.name)}`, `  valueFrom: { secretKeyRef: { name: ${d.name}-db, key: password } }`]),
    },
    "k8s/base/nats.yaml": {
      "user passwords": natsUsers.flatMap((user) => {
        const variable = `${user.toUpperCase()}_NATS`;
        return [`- name: ${variable}_SECRET`, `  valueFrom: { secretKeyRef: { name: ${user}-nats, key: password } }`, `- name: ${variable}_PASSWORD`, `  value: '"$(${variable}_SECRET)"'`];
      }),
      clients: meshDeployables.map((d) => podSelector(d.name)),
    },
    "k8s/overlays/local/kustomization.yaml": {
      secrets: [
        ...withSchema.map((d) => `- { name: ${d.name}-db, envs: [secrets/${d.name}-db.env] }`),
        ...natsUsers.map((user) => `- { name: ${user}-nats, envs: [secrets/${user}-nats.env] }`),
      ],
      replicas: meshDeployables.map((d) => `- { name: ${d.name}, count: 1 }`),
    },
  };
}

/** `text` with each generated region's lines replaced, indented as its markers are. */
export function fillRegions(path: string, text: string, fill: Record<string, string[]>): string {
  const lines = text.split("\n");
  const out: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < lines.length; i++) {
    const begin = /^(\s*)(#|--) begin generated: (.+)$/.exec(lines[i]!);
    out.push(lines[i]!);
    if (!begin) continue;
    const [, indent, comment, region] = begin as unknown as [string, string, string, string];
    const rendered = fill[region];
    if (!rendered) throw new Error(`${path}: no renderer for the generated region "${region}"`);
    const end = lines.findIndex((line, j) => j > i && line === `${indent}${comment} end generated: ${region}`);
    if (end < 0) throw new Error(`${path}: the generated region "${region}" has no end marker`);
    out.push(...rendered.map((line) => (line ? indent + line : "")), lines[end]!);
    seen.add(region);
    i = end;
  }
  const missing = Object.keys(fill).filter((region) => !seen.has(region));
  if (missing.length) throw new Error(`${path}: missing the generated regions ${missing.join(", ")}`);
  return out.join("\n");
}

/** Every file this renders, by its path under deploy/, as it should read. */
export async function deployFiles(): Promise<Record<string, string>> {
  const contracts = await readContracts();
  const files: Record<string, string> = { ...natsConfigFiles() };
  for (const d of services) files[`k8s/base/${d.name}.yaml`] = serviceManifest(d, contracts);
  // postgres-init.sql first: the postgres ConfigMap embeds it as rendered.
  const read = (path: string) => readFileSync(join(deployDir, path), "utf8");
  files["postgres-init.sql"] = fillRegions("postgres-init.sql", read("postgres-init.sql"), { roles: separated(withSchema.map(roleBlock)) });
  for (const [path, fill] of Object.entries(regions(files["postgres-init.sql"]))) files[path] = fillRegions(path, read(path), fill);
  return files;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await deployFiles();
  for (const [path, contents] of Object.entries(files)) writeFileSync(join(deployDir, path), contents);
  console.log(`wrote ${Object.keys(files).length} files under deploy/ from the manifest`);
}
