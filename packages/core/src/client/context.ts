import type { Codec } from '../codec/codec.js';
import type { LogStorage } from '../storage/log-storage.js';
import type { CodecRegistry } from './events.js';
import type { MetadataCache } from './metadata.js';
import type { Retry } from './retry.js';
import type { SchemaRegistrations } from './schema-registrations.js';

/** What every part of a client shares. Internal. */
export interface ClientContext<TDb> {
  readonly clientId: string;
  readonly storage: LogStorage<TDb>;
  readonly retry: Retry;
  readonly codec: Codec;
  readonly codecs: CodecRegistry;
  readonly metadata: MetadataCache;
  /** Registration of published versions in the schema registry, cached per client. */
  readonly schemas: SchemaRegistrations;
  /** Connects the storage (idempotent). */
  ensureConnected(): Promise<void>;
}
