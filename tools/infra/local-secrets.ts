import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * A secret of the local mesh (a NATS password, a Postgres password, the gateway's signing
 * key), generated once and kept in `<dir>/<name>` so restarts and `npm run service` agree on
 * it. The directory is 0700 and each file 0600: only the user who runs the mesh reads them,
 * and `npm start` hands each process only its own.
 */
export function localSecret(dir: string, name: string): string {
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new Error(`"${name}" is not a secret name`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = join(dir, name);
  try {
    const existing = readFileSync(file, "utf8").trim();
    if (existing !== "") {
      chmodSync(file, 0o600); // a copy or an old checkout may have left it readable to others
      return existing;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  // URL-safe, so it can sit in a DATABASE_URL or NATS_URL unescaped.
  const secret = randomBytes(24).toString("base64url");
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${secret}\n`, { mode: 0o600 });
  renameSync(temporary, file);
  return readFileSync(file, "utf8").trim(); // a concurrent writer's rename may have won
}
