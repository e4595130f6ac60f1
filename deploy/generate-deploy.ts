/**
 * Renders what deploy/ says per deployable from the mesh manifest (services/mesh.ts), so that a
 * service is added to compose and kustomize by its manifest entry alone:
 *   npx tsx deploy/generate-deploy.ts
 * It writes each service's k8s/base/<name>.yaml whole (one template for all of them, a legacy
 * deployable's too), each Postgres cluster's (the mesh's, postgres.yaml, and each legacy
 * deployable's own, <name>-postgres.yaml with its init script <name>-postgres-init.sql; see
 * postgres-cluster.ts and legacy-deployables.ts), the NATS configs (nats-config.ts), and the
 * generated regions of the files that are otherwise written by hand: between a "begin
 * generated: <region>" and an "end generated: <region>" comment. The deploy test fails while
 * any file differs from what this writes.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { meshDeployables, meshServices, urlVariable, withSchema, type Deployable } from "#mesh";
import { OPERATOR } from "#platform/trust/mesh-identity.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";
import { readContracts, type ContractReader } from "./contract-callers.js";
import { databasePasswordVariable } from "./generate-secrets.js";
import { callersOf, capturedFrom, deployedLegacySettings, isLegacy, legacyClusters, meshNative, writersOf, type LegacyCluster, type LegacyDeployable } from "./legacy-deployables.js";
import { natsConfigFiles } from "./nats-config.js";
import { postgresClusterManifest, type PostgresCluster } from "./postgres-cluster.js";

const deployDir = import.meta.dirname;
/** The deployables that run as mesh services: all but the gateway, whose k8s file is its own. */
const services: readonly Deployable[] = meshServices;
/** NATS users: every deployable but the legacy ones, the operator and the console's backend. */
const natsUsers = [...meshNative.map((d) => d.name), OPERATOR, CONSOLE];

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

const spiffe = (name: string) => `spiffe://meshwork/${name}`;
/** A Postgres URL whose password Kubernetes fills in from the variable `passwordVariable`. */
const postgresUrl = (role: string, passwordVariable: string, host: string, database: string) => {
  const password = `$(${passwordVariable})`;
  return `postgres://${role}:${password}@${host}:5432/${database}`;
};
const envEntry = (name: string, value: string) => [`- name: ${name}`, `  value: "${value}"`];
const secretEntry = (name: string, secret: string) => [`- name: ${name}`, `  valueFrom: { secretKeyRef: { name: ${secret}, key: password } }`];

/** The pod's environment lines that differ between a mesh service and a legacy deployable. */
function podEnv(d: Deployable): string[] {
  const { name } = d;
  const port = d.port.default;
  const legacy = legacyClusters.find((c) => c.owner === name);
  const identity = legacy
    ? [
        // The legacy app admits, by their certificates' URIs, the callers the manifest names and the operator; writers as writersOf says.
        ...envEntry(`${name.toUpperCase()}_READERS`, [...callersOf(name), OPERATOR].map(spiffe).join(",")),
        ...envEntry(`${name.toUpperCase()}_WRITERS`, writersOf(d as LegacyDeployable).map(spiffe).join(",")),
      ]
    : [
        "- name: POD_IP",
        "  valueFrom: { fieldRef: { fieldPath: status.podIP } }",
        "# Announced in the service registry, so peers balance across pods directly.",
        ...envEntry("ADVERTISE_URL", `https://$(POD_IP):${port}`),
        ...envEntry("SERVICE_VERSION", "latest"),
      ];
  const tls = [
    ...(legacy ? [] : envEntry("MESH_TLS", "on")),
    ...envEntry("TLS_CERT_FILE", "/var/run/meshwork/tls/tls.crt"),
    ...envEntry("TLS_KEY_FILE", "/var/run/meshwork/tls/tls.key"),
    ...envEntry("TLS_CA_FILE", "/var/run/meshwork/tls/ca.crt"),
  ];
  const nats = legacy
    ? []
    : [
        "# Its own NATS user; nats.yaml gives the server the same password.",
        ...secretEntry("NATS_PASSWORD", `${name}-nats`),
        ...envEntry("NATS_URL", `nats://${name}:$(NATS_PASSWORD)@nats:4222`),
        ...envEntry("STREAM_REPLICAS", "3"),
      ];
  const database = legacy
    ? [
        `# Its own role on its own cluster (${legacy.host}.yaml), which owns only its schema.`,
        ...secretEntry("DATABASE_PASSWORD", legacy.appSecret),
        ...envEntry("DATABASE_URL", postgresUrl(legacy.owner, "DATABASE_PASSWORD", legacy.host, legacy.database)),
      ]
    : d.schema
      ? [
          "# Its own Postgres role, which owns only its schema (postgres-role.sql).",
          ...secretEntry("DATABASE_PASSWORD", `${name}-db`),
          ...envEntry("DATABASE_URL", postgresUrl(name, "DATABASE_PASSWORD", "postgres", name)),
        ]
      : [];
  const captures = capturedFrom(name).flatMap((c) => {
    const password = c.captureUrlVariable.replace(/_URL$/, "_PASSWORD");
    return [
      ...wrap(`Change data capture from ${c.owner}'s own cluster, as ${c.captureRole}: LOGIN REPLICATION, reading ${c.schema} alone (postgres-capture-role.sql).`, "# ", 88),
      ...secretEntry(password, c.captureSecret),
      ...envEntry(c.captureUrlVariable, postgresUrl(c.captureRole, password, c.host, c.database)),
    ];
  });
  return [
    ...envEntry("HOST", "0.0.0.0"),
    ...identity,
    ...envEntry(d.port.variable, String(port)),
    ...envEntry("OPS_PORT", String(d.opsPort.default)),
    ...tls,
    ...nats,
    ...envEntry("LOG_LEVEL", "info"),
    ...d.calls.flatMap((peer) => envEntry(urlVariable(peer), peerUrl(peer))),
    ...database,
    ...captures,
  ];
}

/** How kubelet probes it: grpc.health.v1 for a mesh service, GET /healthz for a legacy app. */
function probes(d: Deployable): string[] {
  const ops = d.opsPort.default;
  if (isLegacy(d))
    return [
      "readinessProbe:",
      "  # 200 once its database answers.",
      `  httpGet: { port: ${ops}, path: /healthz }`,
      "  periodSeconds: 5",
      "  failureThreshold: 3",
      "livenessProbe:",
      "  # Its /healthz follows the database, which liveness must not: a database outage would",
      "  # restart every pod. A listening ops port is alive.",
      `  tcpSocket: { port: ${ops} }`,
      "  initialDelaySeconds: 10",
      "  periodSeconds: 10",
      "  failureThreshold: 3",
    ];
  return [
    "readinessProbe:",
    `  grpc: { port: ${ops}, service: "readiness" }`,
    "  periodSeconds: 5",
    "  failureThreshold: 3",
    "livenessProbe:",
    `  grpc: { port: ${ops} }`,
    "  initialDelaySeconds: 10",
    "  periodSeconds: 10",
    "  failureThreshold: 3",
  ];
}

/** A mesh service's or a legacy app's ServiceAccount, Certificate, Deployment, Service, PodDisruptionBudget and NetworkPolicy. */
function serviceManifest(d: Deployable, contracts: ContractReader): string {
  const { name } = d;
  const port = d.port.default;
  const ops = d.opsPort.default;
  const legacy = isLegacy(d);
  const labels = `{ app.kubernetes.io/name: ${name}, app.kubernetes.io/part-of: meshwork }`;
  const access = contracts(d);
  // A legacy app serves no contract: the manifest's `calls` name its callers.
  const callers = legacy ? callersOf(name) : access.callers;
  const admits = wrap(
    legacy
      ? `The port admits the callers the manifest names (${callers.join(", ") || "none"}), whose calls to it are JSON over HTTP/1.1 behind mTLS; the app then checks each caller's certificate. Operators come through kubectl port-forward, which no NetworkPolicy sees.`
      : `The mesh port admits the callers ${name}'s contract names (${access.summary.join("; ") || "none"}); mTLS then checks each call's identity. Operators come through kubectl port-forward, which no NetworkPolicy sees.`,
    "    # ",
  );
  const portName = legacy ? "https" : "rpc";
  const indent = (lines: string[], by: string) => lines.map((line) => `${by}${line}\n`).join("");
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
  uris: ["${spiffe(name)}"]
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
${
  legacy
    ? ""
    : `      annotations:
        # Scraped on the ops port, which serves /metrics in plaintext to the monitoring namespace.
        prometheus.io/scrape: "true"
        prometheus.io/port: "${ops}"
        prometheus.io/path: /metrics
`
}    spec:
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
${
  legacy
    ? `            # The legacy app's JSON over HTTP/1.1: mTLS, a client certificate from the mesh CA required.
            - name: ${portName}
              containerPort: ${port}
            # GET /healthz alone, plaintext, for kubelet.
            - name: ops
              containerPort: ${ops}
`
    : `            # The mesh port: mTLS, a client certificate from the mesh CA required.
            - name: ${portName}
              containerPort: ${port}
            # grpc.health.v1 alone and /metrics, plaintext, for kubelet and Prometheus.
            - name: ops
              containerPort: ${ops}
`
}          env:
${indent(podEnv(d), "            ")}${indent(probes(d), "          ")}          resources:
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
    - name: ${legacy ? "https" : "grpc"}
      port: ${port}
      targetPort: ${portName}
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
    - ports: [{ protocol: TCP, port: ${port} }]${callers.length ? `\n      from:\n${callers.map((caller) => `        ${podSelector(caller)}`).join("\n")}` : "\n      from: []"}
    # The ops port admits Prometheus' namespace only${legacy ? " (a blackbox probe of /healthz; the\n    # app serves no /metrics)" : ""}.
    - ports: [{ protocol: TCP, port: ${ops} }]
      from:
        - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: monitoring } }
`;
}

/** A legacy cluster's volume: room for the app's data and the WAL its capture's slot may hold (deployedLegacySettings). */
const legacyClusterStorage = "10Gi";
const settingsArgs = Object.entries(deployedLegacySettings).flatMap(([key, value]) => ["-c", `${key}=${value}`]);

/** What compose runs for a legacy deployable's own cluster: the server and the one-shot that makes its roles. */
function composeLegacyCluster(c: LegacyCluster): string[][] {
  const init = legacyInitFile(c);
  return [
    [
      `# ${c.owner}'s own cluster, with logical decoding for ${c.capturedBy}'s change data capture.`,
      `${c.host}:`,
      "  image: postgres:16",
      `  command: ${JSON.stringify(["postgres", ...settingsArgs]).replaceAll(",", ", ")}`,
      `  env_file: [.secrets/compose/${c.host}.env] # POSTGRES_PASSWORD, this cluster's admin's`,
      '  healthcheck: { test: ["CMD", "pg_isready", "-U", "postgres"], interval: 3s, retries: 20 }',
    ],
    [
      `# ${c.owner}'s role, database and schema, and ${c.captureRole} with the publication ${c.publication} (${init}).`,
      `${c.host}-roles:`,
      "  image: postgres:16",
      `  env_file: [.secrets/compose/${c.host}-roles.env] # PGPASSWORD and the two roles' passwords`,
      `  command: ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "${c.host}", "-U", "postgres", "-d", "postgres", "-f", "/init/${init}"]`,
      `  volumes: [${legacyScripts(c).map((file) => `"./${file}:/init/${file}:ro"`).join(", ")}]`,
      '  restart: "no"',
      `  depends_on: { ${c.host}: { condition: service_healthy } }`,
    ],
  ];
}

/** One deployable under compose: its own env file, certificate and ports, after what it needs. */
function composeService(d: Deployable): string[] {
  const legacy = legacyClusters.find((c) => c.owner === d.name);
  const captures = capturedFrom(d.name);
  const env = [`<<: *env`, `${d.port.variable}: "${d.port.default}"`, `OPS_PORT: "${d.opsPort.default}"`];
  if (legacy) env.push(`${d.name.toUpperCase()}_READERS: "${[...callersOf(d.name), OPERATOR].map(spiffe).join(",")}"`, `${d.name.toUpperCase()}_WRITERS: "${writersOf(d as LegacyDeployable).map(spiffe).join(",")}"`);
  else env.push(`ADVERTISE_URL: "${k8sUrl(d)}"`);
  for (const peer of d.calls) env.push(`${urlVariable(peer)}: "${peerUrl(peer)}"`);
  // A caller starts once its peers are healthy (a mesh peer's health means Postgres' roles and
  // NATS are there; a legacy one's does not); a capturer once the legacy app it captures is
  // (which makes the tables it copies).
  const meshPeerCalled = d.calls.some((peer) => meshNative.some((n) => n.name === peer));
  const waitsFor = [...new Set([...d.calls, ...captures.map((c) => c.owner)])];
  const dependsOn = legacy
    ? [`${legacy.host}-roles: { condition: service_completed_successfully }`]
    : [...(meshPeerCalled ? [] : ["postgres-roles: { condition: service_completed_successfully }", "nats: { condition: service_healthy }"]), ...waitsFor.map((peer) => `${peer}: { condition: service_healthy }`)];
  const holds = legacy ? ["DATABASE_URL"] : [...(d.schema ? ["DATABASE_URL"] : []), "NATS_URL", ...captures.map((c) => c.captureUrlVariable)];
  return [
    `${d.name}:`,
    `  <<: *service`,
    `  command: ["${d.name}"]`,
    `  env_file: [.secrets/compose/${d.name}.env] # its own ${holds.length > 1 ? `${holds.slice(0, -1).join(", ")} and ${holds.at(-1)}` : holds[0]}`,
    `  environment: { ${env.join(", ")} }`,
    `  volumes: ["./.secrets/compose/pki/${d.name}:/var/run/meshwork/tls:ro"] # its own certificate and key`,
    `  healthcheck: ${legacy ? "*http-healthz" : "*grpc-readiness"}`,
    `  depends_on: { ${dependsOn.join(", ")} }`,
  ];
}

/** A legacy cluster's init script, rendered whole: its app's role (postgres-role.sql), then the capture role (postgres-capture-role.sql). */
const legacyInitFile = (c: LegacyCluster) => `${c.host}-init.sql`;
/** The scripts its roles Job runs, the init script first, as deploy/ has them. */
const legacyScripts = (c: LegacyCluster) => [legacyInitFile(c), "postgres-role.sql", "postgres-capture-role.sql"];

function legacyInit(c: LegacyCluster): string {
  return [
    ...wrap(
      `${c.owner}'s own cluster (a legacy deployable of services/mesh.ts): its role, database and schema (postgres-role.sql), and ${c.capturedBy}'s change data capture role ${c.captureRole} and the publication ${c.publication} there (postgres-capture-role.sql). Run by psql as this cluster's admin, and only there (the ${c.host}-roles Job in k8s and one-shot in compose). Safe to run again. Generated from the manifest by deploy/generate-deploy.ts.`,
      "-- ",
    ),
    "\\set ON_ERROR_STOP on",
    "-- No role but the admin connects to the maintenance database.",
    "REVOKE ALL ON DATABASE postgres FROM PUBLIC;",
    "",
    ...roleBlock({ name: c.owner, database: c.database, schema: c.schema }),
    "",
    `\\getenv password ${databasePasswordVariable(c.captureRole)}`,
    `\\set role ${c.captureRole}`,
    `\\set db ${c.database}`,
    `\\set schema ${c.schema}`,
    `\\set owner ${c.owner}`,
    `\\set publication ${c.publication}`,
    "\\ir postgres-capture-role.sql",
    "",
  ].join("\n");
}

/** The psql lines that give one service its role, database and schema (postgres-role.sql). */
const roleBlock = (r: { name: string; database: string; schema: string }) => [`\\getenv password ${databasePasswordVariable(r.name)}`, `\\set role ${r.name}`, `\\set db ${r.database}`, `\\set schema ${r.schema}`, `\\ir postgres-role.sql`];
/** Each service with a schema, as roleBlock takes it. */
const meshRoles = withSchema.map((d) => ({ name: d.name, database: d.name, schema: d.schema }));

/** Blocks of lines, a blank line between each two. */
const separated = (blocks: string[][]) => blocks.flatMap((block, i) => (i ? ["", ...block] : block));

/** A legacy deployable's cluster, before the deployable itself where files list them in order. */
const clusterOf = (d: Deployable) => legacyClusters.filter((c) => c.owner === d.name);

/** A region's lines, by region name, for each file with generated regions (paths under deploy/). */
function regions(): Record<string, Record<string, string[]>> {
  return {
    "compose.yaml": {
      services: separated(services.flatMap((d) => [...clusterOf(d).flatMap(composeLegacyCluster), composeService(d)])),
      "gateway peers": services.map((d) => `${urlVariable(d.name)}: "${k8sUrl(d)}",`),
      // The gateway reports every service's health: it starts once they all are healthy.
      "gateway depends on": [`depends_on: { ${services.map((d) => `${d.name}: { condition: service_healthy }`).join(", ")} }`],
    },
    "k8s/base/kustomization.yaml": { deployables: meshDeployables.flatMap((d) => [...clusterOf(d).map((c) => `- ${c.host}.yaml`), `- ${d.name}.yaml`]) },
    "k8s/base/gateway.yaml": { peers: services.flatMap((d) => [`- name: ${urlVariable(d.name)}`, `  value: "${k8sUrl(d)}"`]) },
    "k8s/base/nats.yaml": {
      "user passwords": natsUsers.flatMap((user) => {
        const variable = `${user.toUpperCase()}_NATS`;
        return [`- name: ${variable}_SECRET`, `  valueFrom: { secretKeyRef: { name: ${user}-nats, key: password } }`, `- name: ${variable}_PASSWORD`, `  value: '"$(${variable}_SECRET)"'`];
      }),
      clients: meshNative.map((d) => podSelector(d.name)),
    },
    "k8s/overlays/local/kustomization.yaml": {
      secrets: [
        ...withSchema.map((d) => `${d.name}-db`),
        ...legacyClusters.flatMap((c) => [c.adminSecret, c.appSecret, c.captureSecret]),
        ...natsUsers.map((user) => `${user}-nats`),
      ].map((secret) => `- { name: ${secret}, envs: [secrets/${secret}.env] }`),
      replicas: meshDeployables.map((d) => `- { name: ${d.name}, count: 1 }`),
    },
  };
}

/** The mesh's cluster: a database and a role per service with a schema. */
const meshCluster = (init: string): PostgresCluster => ({
  name: "postgres",
  about: [
    "Postgres with a database and a role per service. The postgres-roles Job creates them, and on",
    "a database from before the roles brings its schemas over to them; no service gets the admin",
    "password. In production, point each service's DATABASE_URL at a managed database of its own",
    "and run the same SQL there as its admin. Generated by deploy/generate-deploy.ts.",
  ],
  adminSecret: "postgres-admin",
  storage: "20Gi",
  clients: { why: "Only the services with a schema, and the Job that makes their roles, reach Postgres.", pods: withSchema.map((d) => d.name) },
  scripts: [
    ["postgres-init.sql", init],
    ["postgres-role.sql", readDeploy("postgres-role.sql")],
  ],
  passwords: withSchema.map((d) => ({ variable: databasePasswordVariable(d.name), secret: `${d.name}-db` })),
});

/** A legacy deployable's own cluster: its app's role and its capturer's, and nothing of the mesh's. */
const legacyClusterManifest = (c: LegacyCluster, init: string): PostgresCluster => ({
  name: c.host,
  about: [
    `${c.owner}'s own Postgres cluster (a legacy deployable of services/mesh.ts), never the mesh's:`,
    `${c.capturedBy}'s change data capture needs REPLICATION here, which would otherwise reach every`,
    `service's WAL. The ${c.host}-roles Job makes ${c.owner}'s role, database and schema, and`,
    `${c.captureRole}, which reads ${c.schema} and streams the publication ${c.publication}. Generated by`,
    "deploy/generate-deploy.ts from the manifest.",
  ],
  adminSecret: c.adminSecret,
  settings: {
    why: [
      `Logical decoding for ${c.capturedBy}'s slot; a slot holds at most max_slot_wal_keep_size of WAL`,
      "while its reader is away (past it the slot is lost and the capture starts over from a new",
      "snapshot), so the volume cannot fill up.",
    ],
    values: deployedLegacySettings,
  },
  storage: legacyClusterStorage,
  clients: { why: `Only ${c.owner} and ${c.capturedBy} (its change data capture), and the Job that makes their roles, reach it.`, pods: [c.owner, c.capturedBy] },
  scripts: legacyScripts(c).map((file) => [file, file === legacyInitFile(c) ? init : readDeploy(file)] as const),
  passwords: [
    { variable: databasePasswordVariable(c.owner), secret: c.appSecret },
    { variable: databasePasswordVariable(c.captureRole), secret: c.captureSecret },
  ],
});

const readDeploy = (path: string) => readFileSync(join(deployDir, path), "utf8");

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
  // The init scripts first: each cluster's ConfigMap embeds them as rendered.
  files["postgres-init.sql"] = fillRegions("postgres-init.sql", readDeploy("postgres-init.sql"), { roles: separated(meshRoles.map(roleBlock)) });
  files["k8s/base/postgres.yaml"] = postgresClusterManifest(meshCluster(files["postgres-init.sql"]));
  for (const c of legacyClusters) {
    files[legacyInitFile(c)] = legacyInit(c);
    files[`k8s/base/${c.host}.yaml`] = postgresClusterManifest(legacyClusterManifest(c, files[legacyInitFile(c)]!));
  }
  for (const [path, fill] of Object.entries(regions())) files[path] = fillRegions(path, readDeploy(path), fill);
  return files;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await deployFiles();
  for (const [path, contents] of Object.entries(files)) writeFileSync(join(deployDir, path), contents);
  console.log(`wrote ${Object.keys(files).length} files under deploy/ from the manifest`);
}
