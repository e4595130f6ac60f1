import { nanos } from "@nats-io/transport-node";
import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";

/**
 * JetStream streams as the kit makes them. A mesh names its own (the shop's are in
 * services/shop/streams.ts): typically one stream per bounded context for the events it
 * emits, and one that the dead letters of every consumer share, on `dlq.<consumer>`.
 *
 * Limits (per stream): file storage; a 2-minute duplicate window, within which a
 * republished Nats-Msg-Id is dropped; events kept 7 days (dead letters 30) or up to
 * 1 GiB, oldest discarded first.
 */
export interface StreamSpec {
  name: string;
  subjects: string[];
  maxAgeMs: number;
  /** Copies kept by a JetStream cluster; 1 on a single server. */
  replicas?: number;
}

const DAY = 24 * 60 * 60 * 1000;

/** A stream of the events one bounded context emits, named and on the subjects its mesh chooses. */
export const eventStreamSpec = (name: string, subjects: string[]): StreamSpec => ({ name, subjects, maxAgeMs: 7 * DAY });

const DEAD_LETTER_PREFIX = "dlq";

/** The subject a consumer's dead letters are published on (dead-letters.ts). */
export const deadLetterSubject = (consumer: string) => `${DEAD_LETTER_PREFIX}.${consumer}`;

/** The stream every consumer's dead letters go to, under the name its mesh chooses. */
export const deadLetterStreamSpec = (name: string): StreamSpec => ({ name, subjects: [`${DEAD_LETTER_PREFIX}.>`], maxAgeMs: 30 * DAY });

const DUPLICATE_WINDOW_MS = 2 * 60 * 1000;

/** Creates the stream, or brings an existing one to this configuration; safe to repeat. */
export async function ensureStream(jsm: JetStreamManager, spec: StreamSpec): Promise<void> {
  const config: Partial<StreamConfig> & { name: string } = {
    name: spec.name,
    subjects: spec.subjects,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    max_age: nanos(spec.maxAgeMs),
    max_bytes: 1024 * 1024 * 1024,
    num_replicas: spec.replicas ?? 1,
  };
  try {
    await jsm.streams.info(spec.name);
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
    // A replica may create it between our lookup and our add; then it exists, and that is fine.
    await jsm.streams.add(config).catch((addErr: unknown) => jsm.streams.info(spec.name).catch(() => Promise.reject(addErr)));
    return;
  }
  const { name: _name, storage: _storage, ...updatable } = config;
  await jsm.streams.update(spec.name, updatable);
}
