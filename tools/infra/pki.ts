// Development PKI for the mesh: one local CA, and short-lived per-identity certificates that carry
// the SPIFFE-style URI the services authorize on. Everything is P-256/SHA-256 PEM (keys PKCS#8) because
// that is what Node's tls, grpcurl, curl and Python grpcio all read without conversion.
import "reflect-metadata"; // @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs it loaded first
import * as x509 from "@peculiar/x509";
import { X509Certificate, createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

// Node's WebCrypto is a full implementation; the DOM typing of `Crypto` just differs in detail.
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const SPIFFE_PREFIX = "spiffe://meshwork/";
const IDENTITY_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
/** The CA's own files are ca.crt/ca.key next to the leaves, so no leaf may be called "ca". */
const CA_STEM = "ca";
const CA_NAME = "CN=Meshwork development CA";
const DAY_MS = 86_400_000;
/** Backdating notBefore lets a peer whose clock runs a little behind accept a certificate issued just now. */
const CLOCK_SKEW_MS = 5 * 60_000;
/** A CA this close to expiry would soon leave leaves that outlive it; replace it while there is time. */
const CA_RENEW_WITHIN_MS = 7 * DAY_MS;
const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" };

/** Issues leaf certificates for mesh identities; `certPem` is what every peer trusts (TLS_CA_FILE). */
export interface CertificateAuthority {
  readonly certPem: string;
  /**
   * A fresh key pair and a certificate for `spiffe://meshwork/<identity>`, valid for `localhost`, 127.0.0.1 and ::1
   * (the dev mesh listens there). `clientOnly` omits serverAuth, so a tool's credentials (operator) cannot serve.
   */
  issue(
    identity: string,
    options?: { lifetimeMs?: number; clientOnly?: boolean },
  ): Promise<{ certPem: string; keyPem: string; notAfter: Date }>;
}

/** Throws unless `identity` can be a SPIFFE path segment and a file name in the PKI directory. */
function assertIdentity(identity: string): void {
  if (!IDENTITY_PATTERN.test(identity) || identity === CA_STEM) {
    throw new Error(`invalid mesh identity ${JSON.stringify(identity)}: expected ${IDENTITY_PATTERN}, not "${CA_STEM}"`);
  }
}

function lifetime(ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`certificate lifetime must be a positive number of ms, got ${ms}`);
  return ms;
}

/** 16 random bytes as a positive DER INTEGER: top bit clear (no sign), next bit set (no leading zero to strip). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString("hex");
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** The date a PEM certificate stops being valid. */
export function certificateNotAfter(certPem: string): Date {
  return new x509.X509Certificate(certPem).notAfter;
}

function authority(caCert: x509.X509Certificate, caKey: CryptoKey): CertificateAuthority {
  return {
    certPem: caCert.toString("pem"),
    async issue(identity, options) {
      assertIdentity(identity);
      const lifetimeMs = lifetime(options?.lifetimeMs ?? DAY_MS);
      const keys = await generateKeys();
      const now = Date.now();
      const usages = options?.clientOnly
        ? [x509.ExtendedKeyUsage.clientAuth]
        : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth];
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serialNumber(),
        subject: `CN=${identity}`,
        issuer: caCert.subjectName,
        notBefore: new Date(now - CLOCK_SKEW_MS),
        notAfter: new Date(now + lifetimeMs),
        publicKey: keys.publicKey,
        signingKey: caKey,
        signingAlgorithm: SIGNING_ALGORITHM,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension(usages),
          new x509.SubjectAlternativeNameExtension([
            { type: "url", value: `${SPIFFE_PREFIX}${identity}` },
            { type: "dns", value: "localhost" },
            { type: "ip", value: "127.0.0.1" },
            { type: "ip", value: "::1" },
          ]),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
        ],
      });
      // X.509 times have whole seconds: report the notAfter the certificate actually carries.
      return { certPem: cert.toString("pem"), keyPem: await privateKeyPem(keys.privateKey), notAfter: cert.notAfter };
    },
  };
}

/**
 * A new CA held in memory (tests, and the start of `loadOrCreateCertificateAuthority`). It may sign only leaves
 * (pathLen 0). `keyPem` is returned so the caller can persist it; nothing else should need it.
 */
export async function createCertificateAuthority(options?: {
  lifetimeMs?: number;
}): Promise<CertificateAuthority & { keyPem: string }> {
  const keys = await generateKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: CA_NAME,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + lifetime(options?.lifetimeMs ?? 365 * DAY_MS)),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { ...authority(cert, keys.privateKey), keyPem: await privateKeyPem(keys.privateKey) };
}

/** The CA in these PEMs, or undefined if they do not parse, do not belong together, or expire too soon. */
async function usableAuthority(certPem: string, keyPem: string): Promise<CertificateAuthority | undefined> {
  try {
    const nodeCert = new X509Certificate(certPem);
    if (!nodeCert.ca || !nodeCert.checkPrivateKey(createPrivateKey(keyPem))) return undefined;
    const cert = new x509.X509Certificate(certPem);
    if (cert.notAfter.getTime() - Date.now() < CA_RENEW_WITHIN_MS) return undefined;
    const key = await webcrypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(keyPem), KEY_ALGORITHM, false, [
      "sign",
    ]);
    return authority(cert, key);
  } catch {
    return undefined; // unparsable PEM or a key of another type: treated like a missing CA
  }
}

function readIfPresent(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * The CA that `npm start` keeps under `dir` (ca.crt + ca.key), so certificates stay trusted across restarts.
 * A missing, broken or nearly expired CA is replaced by a new one; `replaced` says an existing one was discarded
 * (every leaf it signed is then untrusted and must be reissued).
 */
export async function loadOrCreateCertificateAuthority(
  dir: string,
): Promise<CertificateAuthority & { readonly replaced: boolean }> {
  const certPem = readIfPresent(join(dir, `${CA_STEM}.crt`));
  const keyPem = readIfPresent(join(dir, `${CA_STEM}.key`));
  const existing = certPem !== undefined && keyPem !== undefined ? await usableAuthority(certPem, keyPem) : undefined;
  if (existing) return { ...existing, replaced: false };
  const created = await createCertificateAuthority();
  writePemPair(dir, CA_STEM, created);
  return { certPem: created.certPem, issue: created.issue, replaced: certPem !== undefined || keyPem !== undefined };
}

/** Replaces `file` in one step (temp file in the same directory, fsync, rename): a reader never sees half a PEM. */
function writeFileAtomically(file: string, contents: string, mode: number): void {
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const fd = openSync(temp, "wx", mode);
    try {
      fchmodSync(fd, mode); // the umask may have cleared bits of a world-readable certificate
      writeFileSync(fd, contents);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

function writePemPair(dir: string, stem: string, credentials: { certPem: string; keyPem: string }) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, `${stem}.key`);
  const certFile = join(dir, `${stem}.crt`);
  // Key first: a reader that sees the new certificate already finds its key (and retries a pair that mismatches).
  writeFileAtomically(keyFile, credentials.keyPem, 0o600);
  writeFileAtomically(certFile, credentials.certPem, 0o644);
  return { certFile, keyFile };
}

/** Writes `<dir>/<identity>.key` (0600) then `<dir>/<identity>.crt` (0644), each atomically; the paths services read. */
export function writeCredentials(
  dir: string,
  identity: string,
  credentials: { certPem: string; keyPem: string },
): { certFile: string; keyFile: string } {
  assertIdentity(identity);
  return writePemPair(dir, identity, credentials);
}

/**
 * Keeps `<dir>/<identity>.{crt,key}` valid for every identity so `npm start` can run short-lived certificates:
 * issues all of them now (`ready`), then reissues one when less than a third of `lifetimeMs` is left, or when its
 * files are missing, mismatched or from another CA. Services pick the new files up themselves. `ready` rejects if
 * the first issuance fails (and nothing is scheduled); it resolves without writing if `stop()` came first.
 * `onRotated` runs after each reissue; failures are reported through `log` and retried on the next check.
 */
export function startCertificateRotation(options: {
  dir: string;
  ca: CertificateAuthority;
  identities: readonly string[];
  lifetimeMs: number;
  clientOnly?: ReadonlySet<string>;
  onRotated?: (identity: string) => void;
  log?: (line: string) => void;
}): { ready: Promise<void>; stop(): void } {
  const { dir, ca, identities, onRotated } = options;
  const lifetimeMs = lifetime(options.lifetimeMs);
  for (const identity of identities) assertIdentity(identity);
  const log = options.log ?? (() => {});
  const caPublicKey = new X509Certificate(ca.certPem).publicKey;
  // Often enough that a third of the lifetime spans several checks; a floor keeps tiny test lifetimes from spinning.
  const intervalMs = Math.max(200, Math.min(lifetimeMs / 6, 60_000));
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const renew = async (identity: string) => {
    const credentials = await ca.issue(identity, { lifetimeMs, clientOnly: options.clientOnly?.has(identity) ?? false });
    // After stop() the directory may be gone (tests remove it); do not recreate it.
    if (!stopped) writeCredentials(dir, identity, credentials);
  };

  /** Why `identity` needs new credentials, or undefined while its files are good. */
  const reissueReason = (identity: string): string | undefined => {
    let certPem: string, keyPem: string;
    try {
      certPem = readFileSync(join(dir, `${identity}.crt`), "utf8");
      keyPem = readFileSync(join(dir, `${identity}.key`), "utf8");
    } catch (error) {
      return `cannot read its files (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
    }
    try {
      const cert = new X509Certificate(certPem);
      if (!cert.verify(caPublicKey)) return "its certificate is from another CA";
      if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return "its key does not match its certificate";
      const leftMs = certificateNotAfter(certPem).getTime() - Date.now();
      return leftMs < lifetimeMs / 3 ? `its certificate expires in ${Math.round(leftMs)} ms` : undefined;
    } catch {
      return "its files do not parse";
    }
  };

  const check = async () => {
    for (const identity of identities) {
      const reason = reissueReason(identity);
      if (reason === undefined || stopped) continue;
      try {
        await renew(identity);
        if (stopped) break;
        log(`certificate for ${identity} reissued: ${reason}`);
        onRotated?.(identity);
      } catch (error) {
        log(`certificate for ${identity} not reissued (${reason}): ${(error as Error).message}`);
      }
    }
    schedule();
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => void check(), intervalMs);
    timer.unref(); // rotation alone must not keep a process alive
  };

  const ready = Promise.all(identities.map(renew)).then(schedule);
  return {
    ready,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
