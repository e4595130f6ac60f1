/**
 * `npm run new-service -- <name>`: scaffolds a working service (tools/build/new-service/):
 * proto/shop/<name>/v1 (<name>_service.proto with CreateItem, admitting the gateway and the
 * operator, and <name>_events.proto with ItemCreated); services/<name> in the house shape, whose
 * RPC writes a row and its event through the outbox and whose own durable consumer records the
 * event in its inbox, with a test of that loop against real Postgres and NATS; its entry in
 * services/mesh.ts; gen/, its first migration and the deploy files.
 *
 * Exits 2, having written nothing, on a bad name: 2 to 20 lower-case letters, no deployable's
 * name, schema or event context, no folder it would claim, no reserved word.
 */
import { resolve } from "node:path";
import { checkNameFormat, InvalidServiceNameError } from "./new-service/service-name.js";

const args = process.argv.slice(2);
if (args.length !== 1) {
  console.error("usage: npm run new-service -- <name>   (2 to 20 lower-case letters, e.g. shipping)");
  process.exit(2);
}
const name = args[0]!;
const root = resolve(import.meta.dirname, "../..");
try {
  // The format first: a typo is refused before the manifest and the scaffolder load (most of a second).
  checkNameFormat(name);
  const [{ meshDeployables }, { scaffoldService }] = await Promise.all([import("#mesh"), import("./new-service/scaffold.js")]);
  const written = scaffoldService({ root, name, deployables: meshDeployables, generate: true, log: (line) => console.log(`new-service: ${line}`) });
  console.log(`new-service: wrote ${written.join(", ")}`);
  console.log(`new-service: next, \`npm run lint\` and \`npx vitest run services/${name}\``);
} catch (err) {
  if (!(err instanceof InvalidServiceNameError)) throw err;
  console.error(`new-service: ${err.message}; nothing was written`);
  process.exit(2);
}
