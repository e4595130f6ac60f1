import { spawnSync } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import type { Env } from "#platform/process/config.js";
import { meshDeployables, type Deployable, type MeshServiceName } from "#mesh";
import { OPERATOR } from "#platform/trust/mesh-identity.js";
import { CONSOLE } from "#platform/trust/mesh-identity.js";
import { natsPasswordVariable } from "#tools/infra/nats-accounts.js";
import { databasePasswordVariable, generateSecrets } from "#deploy/generate-secrets.js";
import { loadConfig as gatewayConfig } from "#gateway/src/config.js";
import { readContracts } from "#deploy/contract-callers.js";
import { deployFiles } from "#deploy/generate-deploy.js";
import { compiledNodeFlags } from "#deploy/bundle-layout.js";
import { callersOf, isLegacy, legacyClusters } from "#deploy/legacy-deployables.js";
import { startLocalPostgres } from "#tools/infra/local-postgres.js";
import { freePort } from "#tools/infra/tcp.js";

/**
 * No Docker engine or cluster runs here, so the deployment is checked by reading it: every
 * manifest parses, and the invariants a zero-trust rollout relies on hold for every deployable
 * of the manifest (services/mesh.ts), with the callers each may admit read from
 * the contract's (meshwork.v1.access) options.
 */
const root = resolve(import.meta.dirname, "../..");
const deploy = join(root, "deploy");

type Loaded = { port: number; opsPort: number; meshTls: { certFile: string; keyFile: string; caFile: string } | "off" };
const deployables: readonly Deployable[] = meshDeployables;
/** A legacy app's settings (it shares no code with the mesh, so its own shape) as the mesh's read. */
type LegacyLoaded = { port: number; opsPort: number; tls?: { certFile: string; keyFile: string; caFile: string } };
const asLoaded =
  (load: (env: Env) => LegacyLoaded) =>
  (env: Env): Loaded => {
    const { port, opsPort, tls } = load(env);
    return { port, opsPort, meshTls: tls ?? "off" };
  };
/** Each deployable's config loader: the loadConfig of src/config.ts beside its entry point. */
const loaders = Object.fromEntries(
  await Promise.all(
    deployables.map(async (d) => {
      const { loadConfig } = (await import(join(root, dirname(d.main), "src/config.ts"))) as { loadConfig: (env: Env) => Loaded & LegacyLoaded };
      return [d.name, isLegacy(d) ? asLoaded(loadConfig) : loadConfig] as const;
    }),
  ),
) as Record<MeshServiceName, (env: Env) => Loaded>;
const names = deployables.map((d) => d.name as MeshServiceName);
/** The mesh services (gRPC, NATS), every deployable but the legacy ones. */
const meshNames = deployables.filter((d) => !isLegacy(d)).map((d) => d.name as MeshServiceName);
const legacyNames = deployables.filter(isLegacy).map((d) => d.name as MeshServiceName);
const withSchema = deployables.filter((d) => d.schema !== undefined).map((d) => d.name);
/** Mesh identities: every deployable and the operator. */
const principals = [...names, OPERATOR];
/** NATS users: those but the legacy deployables, and the console's backend (whose certificate is cert-manager's, in the gateway's file). */
const natsUsers = [...meshNames, OPERATOR, CONSOLE];
const byName = (name: string) => deployables.find((d) => d.name === name)!;

/** A parsed manifest: untyped YAML, read by the paths each check expects. */
type Doc = any;
const yamlDocs = (file: string): Doc[] =>
  parseAllDocuments(readFileSync(file, "utf8"))
    .map((d) => d.toJS())
    .filter(Boolean);
const docsIn = (dir: string): Doc[] => readdirSync(dir).filter((f) => f.endsWith(".yaml")).flatMap((f) => yamlDocs(join(dir, f)));
const base = docsIn(join(deploy, "k8s/base"));
const find = (kind: string, name: string) => base.find((d) => d.kind === kind && d.metadata?.name === name);
const overlay = parse(readFileSync(join(deploy, "k8s/overlays/local/kustomization.yaml"), "utf8"));
const compose = parse(readFileSync(join(deploy, "compose.yaml"), "utf8"), { merge: true });

const podOf = (name: string) => find("Deployment", name).spec.template.spec;
const containerOf = (name: string) => podOf(name).containers[0];
const portNamed = (container: Doc, name: string): number => container.ports.find((p: Doc) => p.name === name).containerPort;
/** The port a deployable serves on: the mesh port (mTLS), the public one if its contract admits "anyone" or "customer", a legacy app's HTTPS. */
const servingPortName = (name: string) => (isLegacy(byName(name)) ? "https" : contract(name).public ? "http" : "rpc");

/** The Secrets of the console's certificate and NATS password, which the gateway's operator listener's backend acts with. */
const CONSOLE_TLS_SECRET = "console-tls";
const CONSOLE_NATS_SECRET = "console-nats";

/** Long enough for every check a loader makes of a secret (the gateway wants 32 characters). */
const SECRET_STANDIN = "stand-in-for-a-value-from-a-kubernetes-secret";

/** A container's environment as the process would see it: secrets and config maps stood in for, $(VAR) expanded as Kubernetes does. */
function envOf(container: Doc, extra: Doc[] = []): Env {
  const env: Record<string, string> = {};
  const entries = [...container.env.filter((e: Doc) => !extra.some((x) => x.name === e.name)), ...extra];
  for (const e of entries) {
    const raw = e.value ?? (e.valueFrom?.secretKeyRef ? SECRET_STANDIN : e.valueFrom?.fieldRef ? "10.1.2.3" : "http://idp.example/jwks.json");
    env[e.name] = String(raw).replace(/\$\((\w+)\)/g, (_: string, name: string) => env[name] ?? "");
  }
  return env;
}

/** Every Secret a pod spec refers to: env, envFrom, secret and projected volumes. */
function secretsOf(pod: Doc): string[] {
  const containers = [...(pod.initContainers ?? []), ...pod.containers];
  const refs = [
    ...containers.flatMap((c: Doc) => (c.env ?? []).map((e: Doc) => e.valueFrom?.secretKeyRef?.name)),
    ...containers.flatMap((c: Doc) => (c.envFrom ?? []).map((e: Doc) => e.secretRef?.name)),
    ...(pod.volumes ?? []).flatMap((v: Doc) => [v.secret?.secretName, ...(v.projected?.sources ?? []).map((s: Doc) => s.secret?.name)]),
  ];
  return [...new Set(refs.filter(Boolean))].sort();
}

/** Who the contract (meshwork.v1.access) lets call each deployable. */
const contract = await readContracts().then((read) => (name: string) => read(byName(name)));

/** The pods (by app.kubernetes.io/name) and namespaces one ingress rule admits. */
function admitted(rule: Doc): { pods: string[]; namespaces: string[]; other: Doc[] } {
  const from: Doc[] = rule.from ?? [{ anything: true }];
  return {
    pods: from.filter((f) => f.podSelector && !f.namespaceSelector).map((f) => f.podSelector.matchLabels["app.kubernetes.io/name"]).sort(),
    namespaces: from.filter((f) => f.namespaceSelector && !f.podSelector).map((f) => f.namespaceSelector.matchLabels["kubernetes.io/metadata.name"]).sort(),
    other: from.filter((f) => !(f.podSelector && !f.namespaceSelector) && !(f.namespaceSelector && !f.podSelector)),
  };
}
/** A NetworkPolicy's ingress rules by port; a rule without ports (every port) under "*". */
function rulesByPort(policy: Doc): Map<number | "*", Doc> {
  const rules = new Map<number | "*", Doc>();
  for (const rule of policy.spec.ingress ?? []) for (const port of rule.ports?.map((p: Doc) => p.port) ?? ["*"]) rules.set(port, rule);
  return rules;
}

describe("Kubernetes manifests (kustomize base)", () => {
  it("are what deploy/generate-deploy.ts renders from the manifest, with the NATS configs", async () => {
    const files = await deployFiles();
    expect(Object.keys(files)).toEqual(expect.arrayContaining(["nats.conf", "k8s/base/nats/nats.conf", "compose.yaml", ...withSchema.map((name) => `k8s/base/${name}.yaml`)]));
    for (const [path, contents] of Object.entries(files)) expect(readFileSync(join(deploy, path), "utf8"), `${path} is stale: npx tsx deploy/generate-deploy.ts`).toBe(contents);
  });

  it("list only files that exist, in the base and the local overlay", () => {
    for (const dir of ["k8s/base", "k8s/overlays/local"]) {
      const kustomization = parse(readFileSync(join(deploy, dir, "kustomization.yaml"), "utf8"));
      for (const resource of kustomization.resources) expect(existsSync(join(deploy, dir, resource)), `${dir}: ${resource}`).toBe(true);
      for (const generated of kustomization.configMapGenerator ?? []) for (const file of generated.files ?? []) expect(existsSync(join(deploy, dir, file.split("=").pop())), `${dir}: ${file}`).toBe(true);
    }
  });

  it("deploy exactly the manifest's deployables", () => {
    expect(base.filter((d) => d.kind === "Deployment").map((d) => d.metadata.name).sort()).toEqual([...names].sort());
    expect(Object.keys(loaders).sort()).toEqual([...names].sort());
  });

  it.each(names)("%s has a Deployment, Service, ServiceAccount and PodDisruptionBudget", (name) => {
    const deployment = find("Deployment", name);
    expect(find("Service", name)?.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(find("ServiceAccount", name).automountServiceAccountToken).toBe(false);
    expect(deployment.spec.template.spec.serviceAccountName).toBe(name);
    expect(find("PodDisruptionBudget", name)?.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
  });

  it.each(meshNames)("%s is probed and scraped on its plaintext ops port, sets resources, and runs non-root on a read-only filesystem", (name) => {
    const pod = podOf(name);
    const container = containerOf(name);
    const ops = portNamed(container, "ops");
    expect(ops).toBe(byName(name).opsPort.default);
    expect(loaders[name](envOf(container)).opsPort).toBe(ops);
    expect(container.readinessProbe.grpc.port).toBe(ops);
    expect(container.livenessProbe.grpc.port).toBe(ops);
    expect(container.livenessProbe.grpc.service ?? "").toBe(""); // liveness never follows dependencies
    expect(container.readinessProbe.grpc.service).toBe(name === "gateway" ? "" : "readiness");
    expect(find("Deployment", name).spec.template.metadata.annotations["prometheus.io/port"]).toBe(String(ops));
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    expect(container.volumeMounts).toContainEqual({ name: "tmp", mountPath: "/tmp" }); // tsx's cache
  });

  it.each(legacyNames)("%s (legacy) is probed over HTTP on its plaintext ops port, ready on GET /healthz, alive while the port listens, and runs non-root on a read-only filesystem", (name) => {
    const pod = podOf(name);
    const container = containerOf(name);
    const ops = portNamed(container, "ops");
    expect(ops).toBe(byName(name).opsPort.default);
    expect(envOf(container)["OPS_PORT"]).toBe(String(ops));
    expect(container.readinessProbe.httpGet).toEqual({ port: ops, path: "/healthz" });
    // /healthz follows its database; liveness never does.
    expect(container.livenessProbe.tcpSocket).toEqual({ port: ops });
    expect(container.readinessProbe.grpc ?? container.livenessProbe.grpc).toBeUndefined();
    expect(find("Deployment", name).spec.template.metadata.annotations ?? {}).not.toHaveProperty("prometheus.io/scrape"); // it serves no /metrics
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
  });

  it("keep the gateway's operator listener from the public: no Service or NetworkPolicy opens its port, and it stays on loopback", () => {
    const operatorPort = byName("gateway").operatorPort!.default;
    for (const service of base.filter((d) => d.kind === "Service")) expect(service.spec.ports.map((p: Doc) => p.port), service.metadata.name).not.toContain(operatorPort);
    for (const policy of base.filter((d) => d.kind === "NetworkPolicy")) expect([...rulesByPort(policy).keys()], policy.metadata.name).not.toContain(operatorPort);
    expect([...rulesByPort(find("NetworkPolicy", "gateway")).keys()]).not.toContain("*");
    // Where it runs (its credentials given), it binds loopback: kubectl port-forward reaches it, nothing else.
    const { operator } = loaders.gateway(envOf(containerOf("gateway"))) as { operator?: { host: string } };
    if (operator) expect(["127.0.0.1", "::1", "localhost"]).toContain(operator.host);
    expect(containerOf("gateway").ports.map((p: Doc) => p.containerPort)).not.toContain(operatorPort);
    // Compose publishes nothing on the operator port beyond the host's loopback.
    const published: string[] = (compose.services.gateway.ports ?? []).map(String);
    for (const mapping of published.filter((p) => p.endsWith(`:${operatorPort}`))) expect(mapping).toMatch(/^127\.0\.0\.1:/);
  });

  it("run the gateway's operator listener on loopback over TLS, for the IdP's operators and the operator certificate, with its backend acting as the console (its certificate and NATS user), never the operator", () => {
    const container = containerOf("gateway");
    const env = envOf(container);
    expect([env["OPERATOR_PORT"], env["OPERATOR_HOST"], env["OPERATOR_TLS"]]).toEqual([String(byName("gateway").operatorPort!.default), "127.0.0.1", "on"]);
    const mount = container.volumeMounts.find((m: Doc) => m.name === podOf("gateway").volumes.find((v: Doc) => v.secret?.secretName === CONSOLE_TLS_SECRET).name);
    expect(mount.readOnly).toBe(true);
    const config = gatewayConfig(env);
    expect(config.operator).toMatchObject({
      host: "127.0.0.1",
      port: byName("gateway").operatorPort!.default,
      serveTls: true,
      // The customers' identity provider, with the role claim, a required issuer and an audience of the operators' own.
      auth: { mode: "jwks", jwksUrl: config.auth.mode === "jwks" ? config.auth.jwksUrl : "", issuer: config.auth.mode === "jwks" ? config.auth.issuer : "", audience: "meshwork-operator", rolesClaim: "roles", role: "operator" },
      tls: { certFile: `${mount.mountPath}/tls.crt`, keyFile: `${mount.mountPath}/tls.key`, caFile: "/var/run/meshwork/tls/ca.crt" },
      natsUrl: `nats://console:${SECRET_STANDIN}@nats:4222`,
      traceIngestToken: undefined,
    });
    // The same in the local overlay, whose operators' tokens have a secret of their own.
    const patch = parse(overlay.patches.find((p: Doc) => p.target.kind === "Deployment" && p.target.name === "gateway").patch);
    const patched: Doc[] = patch.spec.template.spec.containers.find((c: Doc) => c.name === "gateway").env;
    const secretOf = (variable: string) => patched.find((e) => e.name === variable).valueFrom.secretKeyRef.name;
    expect(secretOf("OPERATOR_LOCAL_SECRET")).not.toBe(secretOf("AUTH_LOCAL_SECRET"));
    expect(overlay.secretGenerator.map((s: Doc) => s.name)).toContain(secretOf("OPERATOR_LOCAL_SECRET"));
    const local = gatewayConfig(envOf(container, [...patched, { name: "OPERATOR_LOCAL_SECRET", value: `${SECRET_STANDIN}-operator` }]));
    expect(local.operator).toMatchObject({ host: "127.0.0.1", serveTls: true, auth: { mode: "local" } });
    // Without OPERATOR_TLS: on by default in jwks mode, off in local mode (npm start's browser does not trust the dev CA).
    const without = (entries: Doc[]) => entries.filter((e) => e.name !== "OPERATOR_TLS");
    expect(gatewayConfig(envOf({ ...container, env: without(container.env) })).operator?.serveTls).toBe(true);
    expect(gatewayConfig(envOf({ ...container, env: without(container.env) }, [...patched, { name: "OPERATOR_LOCAL_SECRET", value: `${SECRET_STANDIN}-operator` }])).operator?.serveTls).toBe(false);
  });

  it("let only the gateway mount the console's certificate and NATS password, and nothing mount operator-tls; the operator's NATS password reaches NATS alone", () => {
    const workloads = base.filter((d) => d.spec?.template?.spec);
    const referring = (secret: string) => workloads.filter((w) => secretsOf(w.spec.template.spec).includes(secret)).map((w) => `${w.kind}/${w.metadata.name}`).sort();
    expect(referring(CONSOLE_TLS_SECRET)).toEqual(["Deployment/gateway"]);
    expect(referring(CONSOLE_NATS_SECRET)).toEqual(["Deployment/gateway", "StatefulSet/nats"]);
    expect(referring("operator-tls")).toEqual([]);
    expect(referring("operator-nats")).toEqual(["StatefulSet/nats"]);
    // No certificate the gateway's pods can mount names the operator.
    const mountable = podOf("gateway").volumes.flatMap((v: Doc) => (v.secret ? [v.secret.secretName] : []));
    for (const secret of mountable) expect(base.find((d) => d.kind === "Certificate" && d.spec.secretName === secret).spec.uris, secret).not.toContain("spiffe://meshwork/operator");
    // Compose runs no operator listener, and mounts no operator certificate (checked with generate-secrets below).
    expect(compose.services.gateway.environment["OPERATOR_PORT"]).toBe("off");
  });

  it.each(names)("%s gets every variable its loadConfig requires, and listens where it is reached", (name) => {
    const container = containerOf(name);
    const config = loaders[name](envOf(container));
    const port = portNamed(container, servingPortName(name));
    expect(config.port).toBe(port);
    expect(config.port).toBe(byName(name).port.default);
    expect(find("Service", name).spec.ports.map((p: Doc) => p.port)).toEqual([port]); // the ops port is no Service's
    expect(envOf(container)["HOST"]).toBe("0.0.0.0");
    // Peers reach the pod itself, over mTLS unless it is the public port; a legacy app is in no registry: callers reach its Service.
    expect(envOf(container)["ADVERTISE_URL"]).toBe(isLegacy(byName(name)) ? undefined : `${contract(name).public ? "http" : "https"}://10.1.2.3:${port}`);
    // Its callers reach it at <NAME>_URL, its Service's port, over mTLS.
    for (const caller of callersOf(name)) expect(envOf(containerOf(caller))[`${name.toUpperCase()}_URL`], caller).toBe(`${contract(name).public ? "http" : "https"}://${name}:${port}`);
  });

  it("runs one image for every service, each chosen by argument, from the manifest", () => {
    const runner = readFileSync(join(deploy, "run-service.ts"), "utf8");
    expect(runner).toMatch(/import \{ meshDeployables \} from "#mesh"/);
    expect(runner).toMatch(/import\(pathToFileURL\(join\(import\.meta\.dirname, bundlePath\(deployable\.name\)\)\)\.href\)/);
    for (const { name, main } of deployables) {
      expect(containerOf(name).image).toBe("meshwork:latest");
      expect(containerOf(name).args).toEqual([name]);
      expect(existsSync(join(root, main)), main).toBe(true);
    }
  });

  it("runs a three-server JetStream cluster, and every service keeps three stream replicas", () => {
    expect(find("StatefulSet", "nats").spec.replicas).toBe(3);
    expect(readFileSync(join(deploy, "k8s/base/nats/nats.conf"), "utf8")).toMatch(/jetstream/);
    for (const name of meshNames) expect(envOf(containerOf(name))["STREAM_REPLICAS"]).toBe("3");
  });
});

describe("mTLS identities (cert-manager)", () => {
  const certificates = base.filter((d) => d.kind === "Certificate");
  const certificateFor = (secretName: string) => certificates.find((c) => c.spec.secretName === secretName);

  it("a CA Issuer signs from the Secret meshwork-ca, which a self-signed bootstrap makes and no pod mounts", () => {
    const issuer = find("Issuer", "meshwork-ca");
    expect(issuer.spec.ca.secretName).toBe("meshwork-ca");
    const ca = certificateFor("meshwork-ca");
    expect(ca.spec.isCA).toBe(true);
    expect(find("Issuer", ca.spec.issuerRef.name).spec.selfSigned).toEqual({});
    for (const workload of base.filter((d) => d.spec?.template?.spec)) expect(secretsOf(workload.spec.template.spec), workload.metadata.name).not.toContain("meshwork-ca");
  });

  it.each(names)("%s has a 24 h certificate for spiffe://meshwork/<name>, its Service's name, server and client", (name) => {
    const certificate = certificateFor(`${name}-tls`);
    expect(certificate.spec.uris).toEqual([`spiffe://meshwork/${name}`]);
    expect(certificate.spec.dnsNames).toContain(find("Service", name).metadata.name);
    expect(certificate.spec.usages).toEqual(expect.arrayContaining(["server auth", "client auth"]));
    expect(certificate.spec).toMatchObject({ duration: "24h", renewBefore: "8h", issuerRef: { name: "meshwork-ca", kind: "Issuer" } });
  });

  it("the console's certificate is the console's, and only a client; the gateway's own names loopback, where port-forward reaches its operator listener", () => {
    const certificate = certificateFor(CONSOLE_TLS_SECRET);
    expect(certificate.spec.uris).toEqual(["spiffe://meshwork/console"]);
    expect(certificate.spec.usages).toEqual(["digital signature", "client auth"]);
    expect(certificate.spec).toMatchObject({ duration: "24h", renewBefore: "8h", issuerRef: { name: "meshwork-ca", kind: "Issuer" } });
    expect(certificateFor("gateway-tls").spec).toMatchObject({ dnsNames: expect.arrayContaining(["localhost"]), ipAddresses: ["127.0.0.1"] });
  });

  it("the operator's certificate can only be a client", () => {
    const certificate = certificateFor("operator-tls");
    expect(certificate.spec.uris).toEqual(["spiffe://meshwork/operator"]);
    expect(certificate.spec.usages).toContain("client auth");
    expect(certificate.spec.usages).not.toContain("server auth");
    expect(certificate.spec.issuerRef.name).toBe("meshwork-ca");
  });

  it.each(names)("%s mounts its own certificate read-only and reads its TLS files from there", (name) => {
    const pod = podOf(name);
    const tlsVolumes = pod.volumes.filter((v: Doc) => v.secret);
    // The gateway besides: the console's certificate, for its operator listener's backend (checked below).
    expect(tlsVolumes.map((v: Doc) => v.secret.secretName)).toEqual([`${name}-tls`, ...(name === "gateway" ? [CONSOLE_TLS_SECRET] : [])]);
    expect(tlsVolumes[0].secret.defaultMode & 0o007).toBe(0); // nothing for others
    const mount = containerOf(name).volumeMounts.find((m: Doc) => m.name === tlsVolumes[0].name);
    expect(mount.readOnly).toBe(true);
    const { meshTls } = loaders[name](envOf(containerOf(name)));
    // cert-manager's keys in the Secret: tls.crt, tls.key, ca.crt.
    expect(meshTls).toEqual({ certFile: `${mount.mountPath}/tls.crt`, keyFile: `${mount.mountPath}/tls.key`, caFile: `${mount.mountPath}/ca.crt` });
  });
});

describe("NetworkPolicies", () => {
  const policies = base.filter((d) => d.kind === "NetworkPolicy");
  const policyFor = (app: string) => policies.filter((p) => p.spec.podSelector.matchLabels?.["app.kubernetes.io/name"] === app);

  it("deny all ingress in the namespace unless a policy admits it", () => {
    const denyAll = policies.filter((p) => Object.keys(p.spec.podSelector).length === 0);
    expect(denyAll).toHaveLength(1);
    expect(denyAll[0].spec.policyTypes).toEqual(["Ingress"]);
    expect(denyAll[0].spec.ingress ?? []).toEqual([]);
  });

  it.each(names)("%s admits on its mesh port exactly the callers its contract (a legacy app: the manifest's calls) names, and on its ops port only monitoring", (name) => {
    const [policy, ...others] = policyFor(name);
    expect(others).toEqual([]);
    const container = containerOf(name);
    const rules = rulesByPort(policy);
    expect([...rules.keys()].sort()).toEqual([portNamed(container, servingPortName(name)), portNamed(container, "ops")].sort());
    const mesh = admitted(rules.get(portNamed(container, servingPortName(name))));
    const callers = isLegacy(byName(name)) ? deployables.filter((d) => d.calls.includes(name)).map((d) => d.name).sort() : contract(name).callers;
    expect(mesh.pods).toEqual(callers);
    // Only the public port admits a namespace: the ingress controller's.
    expect(mesh.namespaces).toEqual(contract(name).public ? ["ingress-nginx"] : []);
    expect(mesh.other).toEqual([]);
    expect(admitted(rules.get(portNamed(container, "ops")))).toEqual({ pods: [], namespaces: ["monitoring"], other: [] });
  });

  it("Postgres admits only the services with a schema, and the Job that makes their roles", () => {
    const rules = rulesByPort(policyFor("postgres")[0]);
    expect([...rules.keys()]).toEqual([5432]);
    expect(admitted(rules.get(5432))).toEqual({ pods: [...withSchema, "postgres-roles"].sort(), namespaces: [], other: [] });
    expect(find("Job", "postgres-roles").spec.template.metadata.labels["app.kubernetes.io/name"]).toBe("postgres-roles");
  });

  it("NATS admits every mesh service as a client (no legacy app), its own servers as routes, monitoring on its monitor port", () => {
    const rules = rulesByPort(policyFor("nats")[0]);
    expect([...rules.keys()].sort()).toEqual([4222, 6222, 8222]);
    expect(admitted(rules.get(4222))).toEqual({ pods: [...meshNames].sort(), namespaces: [], other: [] });
    expect(admitted(rules.get(6222))).toEqual({ pods: ["nats"], namespaces: [], other: [] });
    expect(admitted(rules.get(8222))).toEqual({ pods: [], namespaces: ["monitoring"], other: [] });
  });

  it("the local overlay opens the gateway's public port, and only it, to its NodePort", () => {
    const patch = overlay.patches.find((p: Doc) => p.target.kind === "NetworkPolicy" && p.target.name === "gateway");
    const ops = parse(patch.patch);
    const index = Number(/^\/spec\/ingress\/(\d+)\/from$/.exec(ops.find((op: Doc) => op.op === "remove").path)![1]);
    const rule = find("NetworkPolicy", "gateway").spec.ingress[index];
    expect(rule.ports.map((p: Doc) => p.port)).toEqual([portNamed(containerOf("gateway"), "http")]);
    expect(ops).toContainEqual({ op: "test", path: `/spec/ingress/${index}/ports/0/port`, value: rule.ports[0].port });
  });
});

describe("credentials per service", () => {
  const workloads = base.filter((d) => d.spec?.template?.spec);

  it.each(names)("%s refers to its own Secrets alone", (name) => {
    // The gateway's operator listener besides: the console's certificate, and its NATS user for the dead letters.
    // A legacy app: no NATS user, its role's password on its own cluster. A capturer: its capture role's on that cluster.
    const own = [
      `${name}-tls`,
      ...(isLegacy(byName(name)) ? [`${name}-db`] : [`${name}-nats`]),
      ...(byName(name).schema === undefined ? [] : [`${name}-db`]),
      ...legacyClusters.filter((c) => c.capturedBy === name).map((c) => c.captureSecret),
      ...(name === "gateway" ? [CONSOLE_TLS_SECRET, CONSOLE_NATS_SECRET] : []),
    ];
    expect(secretsOf(podOf(name))).toEqual(own.sort());
  });

  it("NATS gets every user's password and Postgres the admin's; the roles Job the admin's and each role's; nothing else", () => {
    const secretsOfWorkload = (kind: string, name: string) => secretsOf(workloads.find((w) => w.kind === kind && w.metadata.name === name).spec.template.spec);
    expect(secretsOfWorkload("StatefulSet", "nats")).toEqual(natsUsers.map((n) => `${n}-nats`).sort());
    expect(secretsOfWorkload("StatefulSet", "postgres")).toEqual(["postgres-admin"]);
    expect(secretsOfWorkload("Job", "postgres-roles")).toEqual(["postgres-admin", ...withSchema.map((n) => `${n}-db`)].sort());
    // Each legacy cluster: its own admin password, and its Job the two roles' besides.
    expect(legacyClusters.length).toBeGreaterThan(0);
    for (const c of legacyClusters) {
      expect(secretsOfWorkload("StatefulSet", c.host)).toEqual([c.adminSecret]);
      expect(secretsOfWorkload("Job", `${c.host}-roles`)).toEqual([c.adminSecret, c.appSecret, c.captureSecret].sort());
    }
    expect(workloads.map((w) => `${w.kind}/${w.metadata.name}`).sort()).toEqual(
      [...names.map((n) => `Deployment/${n}`), "Job/postgres-roles", "StatefulSet/nats", "StatefulSet/postgres", ...legacyClusters.flatMap((c) => [`StatefulSet/${c.host}`, `Job/${c.host}-roles`])].sort(),
    );
  });

  it.each(legacyNames)("%s (legacy) signs in to its own cluster as its own role, and to no NATS", (name) => {
    const env = envOf(containerOf(name));
    expect(Object.keys(env).filter((variable) => variable.startsWith("NATS_"))).toEqual([]);
    const database = new URL(env["DATABASE_URL"]!);
    expect([database.username, database.password, database.host, database.pathname]).toEqual([name, SECRET_STANDIN, `${name}-postgres:5432`, `/${name}`]);
  });

  it.each(meshNames)("%s signs in to Postgres as its own role, never a superuser, and to NATS as its own user", (name) => {
    const env = envOf(containerOf(name));
    const nats = new URL(env["NATS_URL"]!);
    expect([nats.username, nats.password, nats.host]).toEqual([name, SECRET_STANDIN, "nats:4222"]);
    if (byName(name).schema === undefined) {
      expect(env["DATABASE_URL"]).toBeUndefined();
      return;
    }
    const database = new URL(env["DATABASE_URL"]!);
    expect([database.username, database.password, database.pathname]).toEqual([name, SECRET_STANDIN, `/${name}`]);
  });

  it("the roles Job runs postgres-init.sql, which makes a role, database and schema per service that has one", () => {
    const sql = find("ConfigMap", "postgres-init").data;
    expect(sql["postgres-init.sql"]).toBe(readFileSync(join(deploy, "postgres-init.sql"), "utf8"));
    expect(sql["postgres-role.sql"]).toBe(readFileSync(join(deploy, "postgres-role.sql"), "utf8"));
    const blocks = [...sql["postgres-init.sql"].matchAll(/\\getenv password (\w+)\n\\set role (\S+)\n\\set db (\S+)\n\\set schema (\S+)\n\\ir postgres-role.sql/g)].map((m) => m.slice(1));
    expect(blocks).toEqual(withSchema.map((name) => [databasePasswordVariable(name), name, name, byName(name).schema]));
    expect(sql["postgres-role.sql"]).toMatch(/ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';/);
    expect(sql["postgres-role.sql"]).toMatch(/REVOKE ALL ON DATABASE :"db" FROM PUBLIC;/);
    const job = find("Job", "postgres-roles").spec.template.spec.containers[0];
    expect(job.command.join(" ")).toContain("-f /init/postgres-init.sql");
    for (const name of withSchema) expect(job.env.find((e: Doc) => e.name === databasePasswordVariable(name)).valueFrom.secretKeyRef).toEqual({ name: `${name}-db`, key: "password" });
  });

  it("the NATS configs have a user per deployable, the operator and the console, each password from its own Secret", () => {
    const config = readFileSync(join(deploy, "k8s/base/nats/nats.conf"), "utf8");
    const users = [...config.matchAll(/user: "([^"]+)"\s+password: \$(\w+)/g)].map((m) => [m[1], m[2]]);
    expect(users).toEqual(natsUsers.map((n) => [n, natsPasswordVariable(n)]));
    const parsed = parse(readFileSync(join(deploy, "k8s/base/kustomization.yaml"), "utf8"));
    expect(parsed.configMapGenerator).toContainEqual({ name: "nats-config", files: ["nats.conf=nats/nats.conf"] });
    const nats = find("StatefulSet", "nats").spec.template.spec;
    expect(nats.containers[0].args).toEqual(["-c", "/etc/nats/nats.conf"]);
    expect(nats.volumes).toContainEqual({ name: "config", configMap: { name: "nats-config" } });
    for (const name of natsUsers) {
      const env = envOf(nats.containers[0]);
      expect(env[natsPasswordVariable(name)], name).toBe(`"${SECRET_STANDIN}"`); // quoted: nats-server parses the value
      const source = nats.containers[0].env.find((e: Doc) => e.name === /\$\((\w+)\)/.exec(nats.containers[0].env.find((x: Doc) => x.name === natsPasswordVariable(name)).value)![1]);
      expect(source.valueFrom.secretKeyRef).toEqual({ name: `${name}-nats`, key: "password" });
    }
  });

  it("the gateway verifies customers' tokens with jwks, or in the local overlay with a generated secret, never the built-in one", () => {
    const container = containerOf("gateway");
    expect(gatewayConfig(envOf(container)).auth).toMatchObject({ mode: "jwks", jwksUrl: "http://idp.example/jwks.json" });
    const patch = parse(overlay.patches.find((p: Doc) => p.target.kind === "Deployment" && p.target.name === "gateway").patch);
    const patched = patch.spec.template.spec.containers.find((c: Doc) => c.name === "gateway").env;
    expect(patched.find((e: Doc) => e.name === "AUTH_LOCAL_SECRET").valueFrom.secretKeyRef.name).toMatch(/^gateway-/);
    // Every Secret stands in as one value here, which the gateway refuses for two secrets that must differ: the operator's stands in as another.
    const operatorSecret = { name: "OPERATOR_LOCAL_SECRET", value: `${SECRET_STANDIN}-operator` };
    expect(gatewayConfig(envOf(container, [...patched, operatorSecret])).auth).toMatchObject({ mode: "local", secret: SECRET_STANDIN });
    expect(overlay.secretGenerator.map((s: Doc) => s.name)).toContain(patched.find((e: Doc) => e.name === "AUTH_LOCAL_SECRET").valueFrom.secretKeyRef.name);
  });
});

describe("secrets are generated, never committed", () => {
  const ignored = (paths: string[]): Set<string> => {
    // Exit status 1: none of them is ignored.
    const { stdout, status } = spawnSync("git", ["check-ignore", "--stdin"], { cwd: root, input: paths.join("\n"), encoding: "utf8" });
    if (status !== 0 && status !== 1) throw new Error(`git check-ignore exited with ${status}`);
    return new Set(stdout.split("\n").filter(Boolean));
  };
  const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
  const local = walk(deploy).map((f) => relative(root, f));
  const skip = ignored(local);
  const tracked = local.filter((f) => !skip.has(f));

  it("the generator's directories are git-ignored", () => {
    expect([...ignored(["deploy/.secrets/values/order-db", "deploy/k8s/overlays/local/secrets/order-db.env"])].sort()).toEqual(["deploy/.secrets/values/order-db", "deploy/k8s/overlays/local/secrets/order-db.env"]);
  });

  it("no file of deploy/ holds a key, a password in a URL, a Secret's data or a literal password", () => {
    expect(tracked.length).toBeGreaterThan(10);
    for (const file of tracked) {
      const text = readFileSync(join(root, file), "utf8");
      expect(text, file).not.toMatch(/-----BEGIN [A-Z ]*PRIVATE KEY-----/);
      // user:password@ only as a $(VAR) reference that Kubernetes fills in from a Secret.
      for (const [, password] of text.matchAll(/\w+:\/\/[^\s:/@"']+:([^\s@/"']+)@/g)) expect(password, file).toMatch(/^\$\(\w+\)$|^\$\{/); // or a template in a script
      expect(text, file).not.toMatch(/meshwork-local-development-secret/);
      if (!file.endsWith(".yaml")) continue;
      for (const doc of yamlDocs(join(root, file))) {
        if (doc.kind === "Secret") expect(doc.data ?? doc.stringData, `${file}: Secret ${doc.metadata?.name}`).toBeUndefined();
        for (const generated of doc.secretGenerator ?? []) expect(generated.literals, `${file}: ${generated.name}`).toBeUndefined();
      }
    }
  });

  it("no container or compose service sets a password or secret variable to a value", () => {
    const containers = base.filter((d) => d.spec?.template?.spec).flatMap((w) => w.spec.template.spec.containers);
    const literal = (name: string, value: unknown) => /PASSWORD|SECRET/.test(name) && value !== undefined && !/^"?\$\(\w+\)"?$/.test(String(value));
    const offenders = [
      ...containers.flatMap((c: Doc) => c.env.filter((e: Doc) => literal(e.name, e.value)).map((e: Doc) => `${c.name}: ${e.name}`)),
      ...Object.entries(compose.services as Record<string, Doc>).flatMap(([name, s]) => Object.entries(s.environment ?? {}).filter(([k, v]) => literal(k, v)).map(([k]) => `${name}: ${k}`)),
    ];
    expect(containers.length).toBeGreaterThan(names.length);
    expect(offenders).toEqual([]);
  });
});

describe("generate-secrets.ts", () => {
  let dir: string;
  const envFileOf = (file: string): Record<string, string> =>
    Object.fromEntries(
      readFileSync(file, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1).replace(/^'(.*)'$/, "$1")]),
    );
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "meshwork-deploy-"));
    await generateSecrets(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("writes every file the local overlay's secretGenerator and compose's env_files name, each 0600", () => {
    const files = [
      ...overlay.secretGenerator.flatMap((s: Doc) => s.envs.map((f: string) => join(dir, "k8s/overlays/local", f))),
      ...Object.values(compose.services as Record<string, Doc>).flatMap((s) => (s.env_file ?? []).map((f: string) => join(dir, f))),
    ];
    expect(files.length).toBeGreaterThan(principals.length * 2);
    for (const file of files) expect(statSync(file).mode & 0o777, file).toBe(0o600);
    // Every Secret the base refers to, but the certificates cert-manager makes, comes from the overlay.
    const referred = new Set(base.filter((d) => d.spec?.template?.spec).flatMap((w) => secretsOf(w.spec.template.spec)).filter((s) => !s.endsWith("-tls")));
    expect(overlay.secretGenerator.map((s: Doc) => s.name).sort()).toEqual([...referred, "gateway-local-auth", "gateway-operator-auth"].sort());
  });

  it("keeps its passwords across runs", async () => {
    const before = readFileSync(join(dir, "k8s/overlays/local/secrets/order-db.env"), "utf8");
    await generateSecrets(dir);
    expect(readFileSync(join(dir, "k8s/overlays/local/secrets/order-db.env"), "utf8")).toBe(before);
    expect(before).toMatch(/^password=[\w-]{32}\n$/);
  });

  it.each(names)("compose runs %s with its own database role, NATS user (none for a legacy app) and certificate, and publishes only the gateway on loopback", (name) => {
    const service = compose.services[name];
    expect(service.env_file).toEqual([`.secrets/compose/${name}.env`]);
    const own = envFileOf(join(dir, service.env_file[0]));
    const env = { ...own, ...service.environment };
    const config = loaders[name](env);
    expect(config.port).toBe(Number(service.environment[byName(name).port.variable]));
    expect(config.opsPort).toBe(byName(name).opsPort.default);
    const legacy = isLegacy(byName(name));
    expect(env["NATS_URL"] && new URL(env["NATS_URL"]).username).toBe(legacy ? undefined : name);
    expect(env["DATABASE_URL"] && new URL(env["DATABASE_URL"]).username).toBe(byName(name).schema === undefined && !legacy ? undefined : name);
    if (legacy) expect(new URL(env["DATABASE_URL"]!).host).toBe(`${name}-postgres:5432`);
    // Its env file holds no other principal's password, nor the admin's.
    const values = join(dir, ".secrets/values");
    const others = readdirSync(values).filter((f) => !f.startsWith(`${name}-`)).map((f) => readFileSync(join(values, f), "utf8").trim());
    expect(others.length).toBeGreaterThan(principals.length);
    expect(others.filter((other) => readFileSync(join(dir, service.env_file[0]), "utf8").includes(other))).toEqual([]);
    // Its certificate alone, at the paths its TLS variables name.
    expect(service.volumes).toEqual([`./.secrets/compose/pki/${name}:/var/run/meshwork/tls:ro`]);
    expect(config.meshTls).toEqual({ certFile: "/var/run/meshwork/tls/tls.crt", keyFile: "/var/run/meshwork/tls/tls.key", caFile: "/var/run/meshwork/tls/ca.crt" });
    const certificate = new X509Certificate(readFileSync(join(dir, ".secrets/compose/pki", name, "tls.crt")));
    expect(certificate.subjectAltName).toContain(`URI:spiffe://meshwork/${name}`);
    expect(certificate.verify(new X509Certificate(readFileSync(join(dir, ".secrets/compose/pki", name, "ca.crt"))).publicKey)).toBe(true);
    expect(service.ports ?? []).toEqual(contract(name).public ? [`127.0.0.1:${config.port}:${config.port}`] : []);
    expect(service.healthcheck.test.join(" ")).toContain(legacy ? "process.env.OPS_PORT + '/healthz'" : "process.env.OPS_PORT + '/grpc.health.v1.Health/Check'");
  });

  it("compose gives the old shop its role's URL on its own cluster, and the catalog the capture role's, each matching what the cluster's roles one-shot sets, and the old shop no NATS user", () => {
    const roles = envFileOf(join(dir, ".secrets/compose/oldshop-postgres-roles.env"));
    const admin = envFileOf(join(dir, ".secrets/compose/oldshop-postgres.env"))["POSTGRES_PASSWORD"]!;
    expect(roles["PGPASSWORD"]).toBe(admin);
    expect(admin).not.toBe(envFileOf(join(dir, ".secrets/compose/postgres.env"))["POSTGRES_PASSWORD"]); // an admin of its own
    const oldshop = envFileOf(join(dir, ".secrets/compose/oldshop.env"));
    expect(Object.keys(oldshop)).toEqual(["DATABASE_URL"]);
    const app = new URL(oldshop["DATABASE_URL"]!);
    expect([app.username, app.password, app.host, app.pathname]).toEqual(["oldshop", roles["OLDSHOP_DB_PASSWORD"], "oldshop-postgres:5432", "/oldshop"]);
    const catalog = envFileOf(join(dir, ".secrets/compose/catalog.env"));
    const cdc = new URL(catalog["OLDSHOP_CDC_URL"]!);
    expect([cdc.username, cdc.password, cdc.host, cdc.pathname]).toEqual(["catalog_cdc", roles["CATALOG_CDC_DB_PASSWORD"], "oldshop-postgres:5432", "/oldshop"]);
    // Its own database stays on the mesh's cluster.
    expect(new URL(catalog["DATABASE_URL"]!).host).toBe("postgres:5432");
    for (const env of [oldshop, catalog]) expect(Object.values(env).filter((value) => value.includes(admin))).toEqual([]);
  });

  it("compose's operator certificate can only be a client, and no container mounts it or the CA's key", () => {
    const certificate = new X509Certificate(readFileSync(join(dir, ".secrets/compose/pki/operator/tls.crt")));
    expect(certificate.subjectAltName).toContain("URI:spiffe://meshwork/operator");
    expect(certificate.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]); // clientAuth, no serverAuth
    const mounts = Object.values(compose.services as Record<string, Doc>).flatMap((s) => s.volumes ?? []);
    expect(mounts.filter((m: string) => /operator|\/ca[:/]/.test(m))).toEqual([]);
  });

  it("compose's Postgres roles and NATS get the passwords they check", () => {
    const roles = envFileOf(join(dir, ".secrets/compose/postgres-roles.env"));
    const admin = envFileOf(join(dir, ".secrets/compose/postgres.env"))["POSTGRES_PASSWORD"];
    expect(roles["PGPASSWORD"]).toBe(admin);
    for (const name of withSchema) expect(new URL(envFileOf(join(dir, `.secrets/compose/${name}.env`))["DATABASE_URL"]!).password).toBe(roles[databasePasswordVariable(name)]);
    const nats = envFileOf(join(dir, ".secrets/compose/nats.env"));
    for (const name of meshNames) expect(nats[natsPasswordVariable(name)]).toBe(`"${new URL(envFileOf(join(dir, `.secrets/compose/${name}.env`))["NATS_URL"]!).password}"`);
    expect(compose.services.nats.volumes).toEqual(["./nats.conf:/etc/nats/nats.conf:ro"]);
    expect(compose.services["postgres-roles"].command.join(" ")).toContain("-f /init/postgres-init.sql");
  });
});

describe("Docker Compose and the Dockerfile", () => {
  it("runs the old shop's own cluster with logical decoding, the old shop once its roles are made, and the catalog once the old shop is healthy", () => {
    const cluster = compose.services["oldshop-postgres"];
    expect(cluster.image).toBe("postgres:16");
    expect(cluster.command.join(" ")).toMatch(/^postgres .*-c wal_level=logical/);
    expect(cluster.command.join(" ")).toMatch(/-c max_slot_wal_keep_size=\S+/);
    const roles = compose.services["oldshop-postgres-roles"];
    expect(roles.command.join(" ")).toContain("-h oldshop-postgres -U postgres -d postgres -f /init/oldshop-postgres-init.sql");
    expect(roles.volumes.map((v: string) => v.split(":")[0]).sort()).toEqual(["./oldshop-postgres-init.sql", "./postgres-capture-role.sql", "./postgres-role.sql"]);
    expect(compose.services.oldshop.depends_on).toEqual({ "oldshop-postgres-roles": { condition: "service_completed_successfully" } });
    expect(compose.services.catalog.depends_on).toMatchObject({ oldshop: { condition: "service_healthy" } });
    for (const caller of ["gateway", "order"]) {
      expect(compose.services[caller].environment, caller).toMatchObject({ OLDSHOP_URL: "https://oldshop:50060", CATALOG_URL: "https://catalog:50055" });
    }
  });

  it.each(names)("%s starts only once its dependencies are healthy (or, for the roles, done)", (name) => {
    const service = compose.services[name];
    expect(service.image).toBe("meshwork:latest");
    expect(service.command).toEqual([name]);
    expect(service.read_only).toBe(true);
    for (const [dependency, condition] of Object.entries(service.depends_on)) expect(condition).toEqual({ condition: dependency.endsWith("postgres-roles") ? "service_completed_successfully" : "service_healthy" });
  });

  // The Dockerfile's instructions by stage, comments and blank lines left out.
  const stages = readFileSync(join(deploy, "Dockerfile"), "utf8")
    .split(/^(?=FROM )/m)
    .filter((stage) => stage.startsWith("FROM "))
    .map((stage) => stage.split("\n").filter((line) => line.trim() && !line.startsWith("#")));
  const [buildStage = [], runtimeStage = []] = stages;
  const at = (stage: string[], instruction: string) => stage.indexOf(instruction);

  it("builds in stages: every package and npm run build, then production packages only", () => {
    expect(stages).toHaveLength(2);
    expect(buildStage[0]).toBe("FROM node:20-bookworm-slim AS build");
    expect(at(buildStage, "RUN npm ci --no-audit --no-fund"), "npm ci with the dev packages the build needs").toBeGreaterThan(-1);
    expect(at(buildStage, "RUN npm run build")).toBeGreaterThan(at(buildStage, "RUN npm ci --no-audit --no-fund"));
    expect(at(buildStage, "RUN npm prune --omit=dev --no-audit --no-fund"), "the dev packages pruned once the build is done").toBeGreaterThan(at(buildStage, "RUN npm run build"));
  });

  it("runs the compiled bundles on plain node, as a non-root user, with no sources and no tsx", () => {
    expect(runtimeStage[0]).toBe("FROM node:20-bookworm-slim AS runtime");
    expect(runtimeStage.filter((line) => line.startsWith("COPY"))).toEqual([
      "COPY --from=build /app/package.json ./",
      "COPY --from=build /app/node_modules ./node_modules",
      "COPY --from=build /app/dist ./dist",
    ]);
    expect(runtimeStage.filter((line) => /\btsx\b|--import|\.ts\b/.test(line))).toEqual([]);
    expect(runtimeStage).toContain("ENV NODE_ENV=production HOST=0.0.0.0");
    expect(runtimeStage).toContain("USER 1000:1000");
    expect(runtimeStage).toContain(`ENTRYPOINT ${JSON.stringify(["node", ...compiledNodeFlags, "dist/run-service.js"])}`.replaceAll(",", ", "));
  });

  it("sends no secret, key or local state to the image's build", () => {
    const ignored = readFileSync(join(root, ".dockerignore"), "utf8").split("\n").filter((line) => line && !line.startsWith("#"));
    expect(ignored).toEqual(expect.arrayContaining([".git", ".data", "deploy/.secrets", "deploy/k8s/overlays/local/secrets", "node_modules", "dist"]));
  });

  it("gives npm ci what package.json's postinstall needs, so the driver patch is applied in the image", () => {
    const { scripts, devDependencies } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string>; devDependencies: Record<string, string> };
    expect(scripts["postinstall"]).toBe("tsx tools/build/apply-patches.ts");
    // tsx is a dev package: the stage whose npm ci runs the postinstall installs the dev packages.
    expect(devDependencies).toHaveProperty("tsx");
    const install = at(buildStage, "RUN npm ci --no-audit --no-fund");
    for (const copied of ["COPY patches ./patches", "COPY tools/build/apply-patches.ts ./tools/build/"]) {
      expect(at(buildStage, copied), copied).toBeGreaterThan(-1);
      expect(at(buildStage, copied), `${copied} before npm ci`).toBeLessThan(install);
    }
  });
});

describe("the old shop (a legacy deployable) and its own cluster", () => {
  const cluster = legacyClusters.find((c) => c.owner === "oldshop")!;

  it("names the old shop's cluster and roles from the manifest", () => {
    expect(cluster).toMatchObject({ host: "oldshop-postgres", database: "oldshop", schema: "oldshop", captureRole: "catalog_cdc", publication: "oldshop_catalog", captureUrlVariable: "OLDSHOP_CDC_URL" });
  });

  it("runs a cluster of its own with logical decoding and a bound on the WAL a slot holds", () => {
    const statefulSet = find("StatefulSet", "oldshop-postgres");
    expect(find("Service", "oldshop-postgres").spec.selector).toEqual(statefulSet.spec.selector.matchLabels);
    const args: string[] = statefulSet.spec.template.spec.containers[0].args;
    const settings = Object.fromEntries(args.filter((_, i) => args[i - 1] === "-c").map((setting) => setting.split("=")));
    expect(settings).toMatchObject({ wal_level: "logical", max_slot_wal_keep_size: expect.stringMatching(/^\d+GB$/) });
    expect(Number(settings["max_replication_slots"])).toBeGreaterThan(0);
    // The mesh's cluster decodes nothing: no role there needs REPLICATION.
    expect(find("StatefulSet", "postgres").spec.template.spec.containers[0].args).toBeUndefined();
  });

  it("admits only the old shop and the catalog (its change capture), and the Job that makes their roles", () => {
    const [policy, ...others] = base.filter((d) => d.kind === "NetworkPolicy" && d.spec.podSelector.matchLabels?.["app.kubernetes.io/name"] === "oldshop-postgres");
    expect(others).toEqual([]);
    const rules = rulesByPort(policy);
    expect([...rules.keys()]).toEqual([5432]);
    expect(admitted(rules.get(5432))).toEqual({ pods: ["catalog", "oldshop", "oldshop-postgres-roles"], namespaces: [], other: [] });
    expect(find("Job", "oldshop-postgres-roles").spec.template.metadata.labels["app.kubernetes.io/name"]).toBe("oldshop-postgres-roles");
  });

  it("admits catalog, gateway and order, its callers in the manifest, on its HTTPS port", () => {
    const rules = rulesByPort(find("NetworkPolicy", "oldshop"));
    expect(admitted(rules.get(50060)).pods).toEqual(["catalog", "gateway", "order"]);
    for (const caller of ["gateway", "order"]) {
      expect(envOf(containerOf(caller)), caller).toMatchObject({ OLDSHOP_URL: "https://oldshop:50060", CATALOG_URL: "https://catalog:50055" });
    }
    // The catalog's sync back writes to the old shop once catalog writes have moved to it.
    expect(envOf(containerOf("catalog"))).toMatchObject({ OLDSHOP_URL: "https://oldshop:50060" });
    expect(compose.services.catalog.environment).toMatchObject({ OLDSHOP_URL: "https://oldshop:50060" });
  });

  it("lets its callers read, and the operator, the console (the gateway's operator listener) and the catalog's sync back write, in k8s and compose alike", () => {
    const identities = { OLDSHOP_READERS: "spiffe://meshwork/catalog,spiffe://meshwork/gateway,spiffe://meshwork/order,spiffe://meshwork/operator", OLDSHOP_WRITERS: "spiffe://meshwork/operator,spiffe://meshwork/console,spiffe://meshwork/catalog" };
    expect(envOf(containerOf("oldshop"))).toMatchObject(identities);
    expect(compose.services.oldshop.environment).toMatchObject(identities);
  });

  it("starts the catalog under compose once Postgres' roles and NATS are there, and the old shop it captures and writes back to", () => {
    expect(Object.keys(compose.services.catalog.depends_on).sort()).toEqual(["nats", "oldshop", "postgres-roles"]);
  });

  it("gives the catalog the capture role's URL on the old shop's cluster, from a Secret of its own, and keeps its database on the mesh's", () => {
    const env = envOf(containerOf("catalog"));
    const cdc = new URL(env["OLDSHOP_CDC_URL"]!);
    expect([cdc.username, cdc.password, cdc.host, cdc.pathname]).toEqual(["catalog_cdc", SECRET_STANDIN, "oldshop-postgres:5432", "/oldshop"]);
    const password = containerOf("catalog").env.find((e: Doc) => e.name === /\$\((\w+)\)/.exec(containerOf("catalog").env.find((x: Doc) => x.name === "OLDSHOP_CDC_URL").value)![1]);
    expect(password.valueFrom.secretKeyRef).toEqual({ name: "catalog-cdc", key: "password" });
    expect(new URL(env["DATABASE_URL"]!).host).toBe("postgres:5432");
  });

  it("runs the old shop's init script, as deploy/ has it, with each role's password from its own Secret", () => {
    const scripts = find("ConfigMap", "oldshop-postgres-init").data;
    for (const file of ["oldshop-postgres-init.sql", "postgres-role.sql", "postgres-capture-role.sql"]) expect(scripts[file], file).toBe(readFileSync(join(deploy, file), "utf8"));
    const job = find("Job", "oldshop-postgres-roles").spec.template.spec;
    expect(job.containers[0].command.join(" ")).toContain("-h oldshop-postgres -U postgres -d postgres -f /init/oldshop-postgres-init.sql");
    const secretOf = (variable: string) => job.containers[0].env.find((e: Doc) => e.name === variable).valueFrom.secretKeyRef;
    expect([secretOf("PGPASSWORD"), secretOf("OLDSHOP_DB_PASSWORD"), secretOf("CATALOG_CDC_DB_PASSWORD")]).toEqual([
      { name: "oldshop-postgres-admin", key: "password" },
      { name: "oldshop-db", key: "password" },
      { name: "catalog-cdc", key: "password" },
    ]);
    expect(job.volumes).toContainEqual({ name: "init", configMap: { name: "oldshop-postgres-init" } });
  });

  describe("its init script, run by psql on a cluster with the same settings", () => {
    const dir = mkdtempSync(join(tmpdir(), "meshwork-oldshop-postgres-"));
    const passwords = { admin: randomBytes(18).toString("base64url"), oldshop: randomBytes(18).toString("base64url"), cdc: randomBytes(18).toString("base64url") };
    let server: Awaited<ReturnType<typeof startLocalPostgres>>;
    let port: number;
    let runs: ReturnType<typeof runInit>[];
    const as = (user: string, password: string, database = "oldshop") => postgres(`postgres://${user}:${password}@127.0.0.1:${port}/${database}`, { max: 1, onnotice: () => {} });
    const runInit = () =>
      spawnSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-f", join(deploy, "oldshop-postgres-init.sql")], {
        encoding: "utf8",
        env: { PATH: process.env["PATH"], PGPASSWORD: passwords.admin, OLDSHOP_DB_PASSWORD: passwords.oldshop, CATALOG_CDC_DB_PASSWORD: passwords.cdc },
      });
    const clients: postgres.Sql[] = [];
    const connect = (user: string, password: string, database?: string) => {
      const sql = as(user, password, database);
      clients.push(sql);
      return sql;
    };

    beforeAll(async () => {
      port = await freePort();
      const args = find("StatefulSet", "oldshop-postgres").spec.template.spec.containers[0].args as string[];
      const settings = Object.fromEntries(args.filter((_, i) => args[i - 1] === "-c").map((setting) => setting.split("=") as [string, string]));
      // Commits flushed at once, as durable clusters do: logical decoding reads only flushed WAL.
      server = await startLocalPostgres({ dataDir: join(dir, "data"), port, superuserPassword: passwords.admin, durable: false, settings: { ...settings, synchronous_commit: "on" } });
      runs = [runInit(), runInit()];
    }, 60_000);
    afterAll(async () => {
      await Promise.all(clients.map((sql) => sql.end()));
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("makes the old shop's role and the capture role, twice over without harm", async () => {
      for (const run of runs) expect(run.stderr).not.toMatch(/ERROR|FATAL/);
      expect(runs.map((run) => run.status)).toEqual([0, 0]);
      const admin = connect("postgres", passwords.admin, "postgres");
      const roles = await admin`SELECT rolname, rolreplication, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname IN ('oldshop', 'catalog_cdc') ORDER BY rolname`;
      expect(roles.map((r) => ({ ...r }))).toEqual([
        { rolname: "catalog_cdc", rolreplication: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false },
        { rolname: "oldshop", rolreplication: false, rolsuper: false, rolcreatedb: false, rolcreaterole: false },
      ]);
      expect((await admin`SHOW wal_level`)[0]!["wal_level"]).toBe("logical");
    });

    it("lets the old shop make its tables, the capture role read and stream them through the publication, and write nothing", async () => {
      const oldshop = connect("oldshop", passwords.oldshop);
      // As the legacy app does at start: its schema's tables, made after the publication.
      await oldshop`CREATE SCHEMA IF NOT EXISTS oldshop`;
      await oldshop`CREATE TABLE IF NOT EXISTS oldshop.products (sku text PRIMARY KEY, title text NOT NULL, price numeric(12,2) NOT NULL)`;
      const cdc = connect("catalog_cdc", passwords.cdc);
      await cdc`SELECT pg_create_logical_replication_slot('deploy_test', 'pgoutput')`;
      await oldshop`INSERT INTO oldshop.products VALUES ('MW-MUG-001', 'Mug', 12.99)`;
      expect(await cdc`SELECT sku, title FROM oldshop.products`).toEqual([{ sku: "MW-MUG-001", title: "Mug" }]);
      const changes = await cdc`SELECT count(*)::int AS n FROM pg_logical_slot_peek_binary_changes('deploy_test', NULL, NULL, 'proto_version', '1', 'publication_names', 'oldshop_catalog')`;
      expect(changes[0]!["n"]).toBeGreaterThan(2); // BEGIN, RELATION, INSERT, COMMIT
      const admin = connect("postgres", passwords.admin);
      expect(await admin`SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = 'oldshop_catalog'`).toEqual([{ schemaname: "oldshop", tablename: "products" }]);
      await cdc`SELECT pg_drop_replication_slot('deploy_test')`;
      // Denied: writing, making objects, another database; the app role: publications of its own.
      await expect(cdc`INSERT INTO oldshop.products VALUES ('X', 'x', 1)`).rejects.toMatchObject({ code: "42501" });
      await expect(cdc`CREATE TABLE oldshop.mine (id int)`).rejects.toMatchObject({ code: "42501" });
      await expect(connect("catalog_cdc", passwords.cdc, "postgres")`SELECT 1`).rejects.toMatchObject({ code: "42501" });
      await expect(oldshop`CREATE PUBLICATION mine FOR TABLE oldshop.products`).rejects.toThrow(/owns only its own schema/);
    });
  });
});
