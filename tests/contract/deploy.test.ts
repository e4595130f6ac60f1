import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import type { Env } from "../../services/platform/config.js";
import { loadConfig as orderConfig } from "../../services/order/src/config.js";
import { loadConfig as inventoryConfig } from "../../services/inventory/src/config.js";
import { loadConfig as paymentConfig } from "../../services/payment/src/config.js";
import { loadConfig as notificationConfig } from "../../services/notification/src/config.js";
import { loadConfig as gatewayConfig } from "../../gateway/src/config.js";

/**
 * No Docker engine or cluster runs here, so the deployment is checked by reading it: every
 * manifest parses, and the invariants a production rollout relies on hold.
 */
const deploy = resolve(import.meta.dirname, "../../deploy");
const loaders: Record<string, (env: Env) => { port: number }> = {
  order: orderConfig,
  inventory: inventoryConfig,
  payment: paymentConfig,
  notification: notificationConfig,
  gateway: gatewayConfig,
};
const services = Object.keys(loaders);

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- manifests are untyped YAML
type Doc = any;
const docsIn = (dir: string): Doc[] =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), "utf8")).map((d) => d.toJS()))
    .filter(Boolean);
const base = docsIn(join(deploy, "k8s/base"));
const find = (kind: string, name: string) => base.find((d) => d.kind === kind && d.metadata?.name === name);

/** A container's environment as the process would see it: secrets and the pod IP stood in for, $(VAR) expanded as Kubernetes does. */
function envOf(container: Doc): Env {
  const placeholders: Record<string, string> = { DATABASE_URL: "postgres://user:secret@postgres:5432/db", AUTH_JWKS_URL: "http://idp.example/jwks.json", POD_IP: "10.1.2.3" };
  const env: Record<string, string> = {};
  for (const e of container.env) env[e.name] = (e.value ?? placeholders[e.name] ?? "from-a-secret").replace(/\$\((\w+)\)/g, (_: string, name: string) => env[name] ?? "");
  return env;
}

describe("Kubernetes manifests (kustomize base)", () => {
  it("list only files that exist, in the base and the local overlay", () => {
    for (const dir of ["k8s/base", "k8s/overlays/local"]) {
      const kustomization = parse(readFileSync(join(deploy, dir, "kustomization.yaml"), "utf8"));
      for (const resource of kustomization.resources) expect(existsSync(join(deploy, dir, resource)), `${dir}: ${resource}`).toBe(true);
    }
  });

  it.each(services)("%s has a Deployment, Service, ServiceAccount and PodDisruptionBudget", (name) => {
    const deployment = find("Deployment", name);
    expect(deployment).toBeDefined();
    expect(find("Service", name)?.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(find("ServiceAccount", name)).toBeDefined();
    expect(deployment.spec.template.spec.serviceAccountName).toBe(name);
    expect(find("PodDisruptionBudget", name)?.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
  });

  it.each(services)("%s probes gRPC health, sets resources, and runs non-root on a read-only filesystem", (name) => {
    const pod = find("Deployment", name).spec.template.spec;
    const [container] = pod.containers;
    const port = container.ports[0].containerPort;
    expect(container.readinessProbe.grpc.port).toBe(port);
    expect(container.livenessProbe.grpc.port).toBe(port);
    expect(container.livenessProbe.grpc.service ?? "").toBe(""); // liveness never follows dependencies
    expect(container.readinessProbe.grpc.service).toBe(name === "gateway" ? "" : "readiness");
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    expect(container.volumeMounts).toContainEqual({ name: "tmp", mountPath: "/tmp" }); // tsx's cache
  });

  it.each(services)("%s gets every variable its loadConfig requires, and listens where it is probed", (name) => {
    const [container] = find("Deployment", name).spec.template.spec.containers;
    const config = loaders[name]!(envOf(container));
    expect(config.port).toBe(container.ports[0].containerPort);
    expect(find("Service", name).spec.ports[0].port).toBe(config.port);
    expect(envOf(container)["HOST"]).toBe("0.0.0.0");
    expect(envOf(container)["ADVERTISE_URL"]).toBe(`http://10.1.2.3:${config.port}`); // peers reach the pod itself
  });

  it("runs one image for every service, each chosen by argument", () => {
    const runner = readFileSync(join(deploy, "run-service.ts"), "utf8");
    for (const name of services) {
      const [container] = find("Deployment", name).spec.template.spec.containers;
      expect(container.image).toBe("meshwork:latest");
      expect(container.args).toEqual([name]);
      expect(runner).toContain(`${name}: "`);
    }
  });

  it("the local overlay's patch switches the gateway to local demo tokens", () => {
    const overlay = parse(readFileSync(join(deploy, "k8s/overlays/local/kustomization.yaml"), "utf8"));
    const patch = overlay.patches.find((p: Doc) => p.target.name === "gateway" && p.target.kind === "Deployment");
    const [op] = parse(patch.patch);
    const index = Number(/env\/(\d+)\/value$/.exec(op.path)![1]);
    expect(find("Deployment", "gateway").spec.template.spec.containers[0].env[index].name).toBe("AUTH_MODE");
    expect(op.value).toBe("local");
  });

  it("runs a three-server JetStream cluster, and every service keeps three stream replicas", () => {
    expect(find("StatefulSet", "nats").spec.replicas).toBe(3);
    expect(find("ConfigMap", "nats-config").data["nats.conf"]).toMatch(/jetstream/);
    for (const name of services) expect(envOf(find("Deployment", name).spec.template.spec.containers[0])["STREAM_REPLICAS"]).toBe("3");
  });

  it("gives each service with state a database of its own", () => {
    const init = find("ConfigMap", "postgres-init").data["init.sql"];
    for (const name of services.filter((n) => n !== "gateway")) {
      expect(init).toContain(name === "order" ? 'CREATE DATABASE "order"' : `CREATE DATABASE ${name}`);
      const url = find("Deployment", name).spec.template.spec.containers[0].env.find((e: Doc) => e.name === "DATABASE_URL");
      expect(url.valueFrom.secretKeyRef.name).toBe(`${name}-database`);
    }
  });
});

describe("Docker Compose and the Dockerfile", () => {
  const compose = parse(readFileSync(join(deploy, "compose.yaml"), "utf8"), { merge: true });

  it.each(services)("%s starts only once its dependencies are healthy, and is configured completely", (name) => {
    const service = compose.services[name];
    expect(service.image).toBe("meshwork:latest");
    expect(service.command).toEqual([name]);
    expect(service.read_only).toBe(true);
    expect(service.healthcheck.test.join(" ")).toContain("grpc.health.v1.Health/Check");
    for (const dependency of Object.values(service.depends_on)) expect(dependency).toEqual({ condition: "service_healthy" });
    expect(loaders[name]!(service.environment).port).toBe(Number(service.environment.PORT));
  });

  it("builds in stages and runs as a non-root user", () => {
    const dockerfile = readFileSync(join(deploy, "Dockerfile"), "utf8");
    expect(dockerfile.match(/^FROM /gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "--import", "tsx", "deploy\/run-service.ts"\]$/m);
  });

  it("gives npm ci what package.json's postinstall needs, so the driver patch is applied in the image", () => {
    const dockerfile = readFileSync(join(deploy, "Dockerfile"), "utf8");
    const postinstall = (JSON.parse(readFileSync(join(deploy, "..", "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts["postinstall"];
    expect(postinstall).toBe("tsx tools/apply-patches.ts");
    const install = dockerfile.indexOf("RUN npm ci");
    for (const copied of ["COPY patches ./patches", "COPY tools/apply-patches.ts ./tools/"]) {
      expect(dockerfile.indexOf(copied), copied).toBeGreaterThan(-1);
      expect(dockerfile.indexOf(copied), `${copied} before npm ci`).toBeLessThan(install);
    }
  });
});
