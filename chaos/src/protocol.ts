/** What the harness tells a worker process (argv[2], JSON) and what workers say back over IPC. */

/** How a producer writes one value (cycled per send). */
export type ProducerMode =
  /** `producer.send`, one autocommitted statement. */
  | 'send'
  /** `producer.send` with `acks: 1`: BEGIN … COMMIT, so a lost COMMIT reply is visible to the client. */
  | 'acks1'
  /** An idempotent producer's send. */
  | 'idempotent'
  /** `producer.transaction()` (transactional id) with two records, committed. */
  | 'txn'
  /** The same, aborted. */
  | 'txn-abort'
  /** `annals.transaction` with two records, committed. */
  | 'annals-tx'
  /** `annals.transaction` that throws after sending: rolled back. */
  | 'annals-tx-rollback'
  /** A storage transaction that appends (taking the head lock) and then rolls back. */
  | 'storage-rollback'
  /** A storage transaction that appends and holds the head lock `longTxMs` before committing. */
  | 'long-tx'
  /** `producer.transaction()` writing to `topic` and `topic2`, committed. */
  | 'multi-txn'
  /** The same, aborted. */
  | 'multi-txn-abort';

export interface CommonConfig {
  readonly proc: string;
  readonly historyFile: string;
  readonly connectionString: string;
  readonly schema: string;
}

export interface ProducerConfig extends CommonConfig {
  readonly role: 'producer';
  readonly topic: string;
  readonly partitions: number;
  readonly topic2?: string;
  /** Producer instances in this process, each sending sequentially. */
  readonly producers: number;
  /** Values per producer instance. */
  readonly count: number;
  readonly keys: number;
  readonly modes: readonly ProducerMode[];
  readonly paceMs: number;
  readonly longTxMs?: number;
  /** Every n-th value is a poison record (its handler always throws). */
  readonly poisonEvery?: number;
  /** Stop sending after this many ms even if `count` is not reached. */
  readonly maxMs: number;
}

export interface ConsumerConfig extends CommonConfig {
  readonly role: 'consumer';
  readonly groupId: string;
  readonly topics: readonly string[];
  /** Exactly-once: the handler counts each record in `effects` through `tx`. */
  readonly exactlyOnce: boolean;
  readonly sessionTimeout: number;
  readonly heartbeatInterval: number;
  readonly maxRecordsPerFetch: number;
  readonly handlerDelayMs: number;
  readonly deadLetterTopic?: string;
  /** Hang once in the handler of this value (after writing through tx), for `ms`. `marker`: a file that says it already hung. */
  readonly hang?: { readonly value: string; readonly ms: number; readonly marker: string };
  /** Consume typed events (msgpack) through a subscriber instead of raw records. */
  readonly typed?: { readonly partitions: number };
}

/** Rebuilds the `seen` projection (a document per event id, counting its applications) over the typed topic. */
export interface RebuilderConfig extends CommonConfig {
  readonly role: 'rebuilder';
  readonly topic: string;
  readonly partitions: number;
  readonly batchSize: number;
  readonly delayMs: number;
}

/** Runs the in-process cleaner (retention and compaction) every `intervalMs`, and nothing else. */
export interface CleanerConfig extends CommonConfig {
  readonly role: 'cleaner';
  readonly intervalMs: number;
  readonly chunkRecords: number;
}

export type WorkerConfig = ProducerConfig | ConsumerConfig | RebuilderConfig | CleanerConfig;

export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'member'; readonly memberId: string }
  | { readonly type: 'done'; readonly sent: number }
  | { readonly type: 'progress'; readonly eventsDone: number; readonly eventsTotal: number }
  | { readonly type: 'error'; readonly message: string };

export type ToWorker = 'stop';
