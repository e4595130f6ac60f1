/**
 * One Postgres cluster's k8s manifest (k8s/base/<name>.yaml): its Service, StatefulSet,
 * NetworkPolicy, the ConfigMap of its init scripts and the Job that runs them as the admin.
 * The mesh's cluster (postgres) and each legacy deployable's own (oldshop-postgres) are
 * rendered from this one template by generate-deploy.ts.
 */

export interface PostgresCluster {
  /** Its StatefulSet, Service and host name. */
  name: string;
  /** The file's opening comment, one line of text each. */
  about: readonly string[];
  adminSecret: string;
  /** Server settings beyond the image's defaults (`-c name=value`), with why. */
  settings?: { why: readonly string[]; values: Readonly<Record<string, string>> };
  storage: string;
  /** The pods besides its roles Job that may connect, with why. */
  clients: { why: string; pods: readonly string[] };
  /** The ConfigMap's scripts, by file name, as deploy/ has them; the Job runs the first. */
  scripts: readonly (readonly [file: string, text: string])[];
  /** The role passwords the Job sets, each from its own Secret. */
  passwords: readonly { variable: string; secret: string }[];
}

const indented = (text: string, indent: string) => text.trimEnd().split("\n").map((line) => (line ? `${indent}${line}` : ""));

export function postgresClusterManifest(cluster: PostgresCluster): string {
  const { name } = cluster;
  const labels = (app: string) => `{ app.kubernetes.io/name: ${app}, app.kubernetes.io/part-of: meshwork }`;
  const roles = `${name}-roles`;
  const settings = cluster.settings
    ? [
        ...cluster.settings.why.map((line) => `          # ${line}`),
        `          args: [${Object.entries(cluster.settings.values).flatMap(([key, value]) => [`"-c"`, `"${key}=${value}"`]).join(", ")}]`,
      ]
    : [];
  return [
    ...cluster.about.map((line) => `# ${line}`.trimEnd()),
    `apiVersion: v1
kind: Service
metadata:
  name: ${name}
spec:
  selector: { app.kubernetes.io/name: ${name} }
  ports:
    - { name: postgres, port: 5432 }
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: ${name}
  labels: ${labels(name)}
spec:
  serviceName: ${name}
  replicas: 1
  selector:
    matchLabels: { app.kubernetes.io/name: ${name} }
  template:
    metadata:
      labels: ${labels(name)}
    spec:
      automountServiceAccountToken: false
      securityContext: { runAsNonRoot: true, runAsUser: 999, fsGroup: 999 }
      containers:
        - name: postgres
          image: postgres:16`,
    ...settings,
    `          env:
            - name: POSTGRES_PASSWORD
              valueFrom: { secretKeyRef: { name: ${cluster.adminSecret}, key: password } }
            - name: PGDATA
              value: /var/lib/postgresql/data/pgdata
          ports:
            - { name: postgres, containerPort: 5432 }
          readinessProbe:
            exec: { command: ["pg_isready", "-U", "postgres"] }
          livenessProbe:
            exec: { command: ["pg_isready", "-U", "postgres"] }
            initialDelaySeconds: 20
          resources:
            requests: { cpu: 250m, memory: 512Mi }
            limits: { memory: 2Gi }
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: { drop: [ALL] }
          volumeMounts:
            - { name: data, mountPath: /var/lib/postgresql/data }
            - { name: run, mountPath: /var/run/postgresql }
            - { name: tmp, mountPath: /tmp }
      volumes:
        - name: run
          emptyDir: {}
        - name: tmp
          emptyDir: {}
  volumeClaimTemplates:
    - metadata: { name: data }
      spec:
        accessModes: [ReadWriteOnce]
        resources: { requests: { storage: ${cluster.storage} } }
---
# ${cluster.clients.why}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: ${name}
spec:
  podSelector: { matchLabels: { app.kubernetes.io/name: ${name} } }
  policyTypes: [Ingress]
  ingress:
    - ports: [{ protocol: TCP, port: 5432 }]
      from:`,
    ...[...cluster.clients.pods, roles].map((pod) => `        - podSelector: { matchLabels: { app.kubernetes.io/name: ${pod} } }`),
    `---
# Its init scripts, as deploy/ has them (the deploy test compares).
apiVersion: v1
kind: ConfigMap
metadata:
  name: ${name}-init
data:`,
    ...cluster.scripts.flatMap(([file, text]) => [`  ${file}: |`, ...indented(text, "    ")]),
    `---
# Creates or updates the roles, databases and schemas; safe to run again. Until it has run,
# its clients fail to sign in and restart with backoff. A Job cannot be changed in place: once
# it is gone (ttlSecondsAfterFinished) \`kubectl apply\` runs it anew, and before then
# \`kubectl -n meshwork delete job ${roles}\` lets it.
apiVersion: batch/v1
kind: Job
metadata:
  name: ${roles}
  labels: ${labels(roles)}
spec:
  backoffLimit: 30
  ttlSecondsAfterFinished: 600
  template:
    metadata:
      labels: ${labels(roles)}
    spec:
      restartPolicy: OnFailure
      automountServiceAccountToken: false
      securityContext: { runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, seccompProfile: { type: RuntimeDefault } }
      containers:
        - name: psql
          image: postgres:16
          command: ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "${name}", "-U", "postgres", "-d", "postgres", "-f", "/init/${cluster.scripts[0]![0]}"]
          env:
            - name: PGPASSWORD
              valueFrom: { secretKeyRef: { name: ${cluster.adminSecret}, key: password } }
            - name: PGCONNECT_TIMEOUT
              value: "5"`,
    ...cluster.passwords.flatMap(({ variable, secret }) => [`            - name: ${variable}`, `              valueFrom: { secretKeyRef: { name: ${secret}, key: password } }`]),
    `          resources:
            requests: { cpu: 10m, memory: 32Mi }
            limits: { memory: 128Mi }
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: { drop: [ALL] }
          volumeMounts:
            - { name: init, mountPath: /init, readOnly: true }
      volumes:
        - name: init
          configMap: { name: ${name}-init }
`,
  ].join("\n");
}
