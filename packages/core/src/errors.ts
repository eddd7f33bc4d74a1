/**
 * Every error a user of Annals can meet is an {@link AnnalsError}: one base class with a literal
 * `code` (Kafka's error names where Kafka has one), a `retriable` flag that the client's retry
 * loop trusts, the context it happened in, and the underlying `cause`.
 *
 * The table of codes lives here and nowhere else; Postgres error codes are translated into these
 * classes in one module of `@annals/storage-pg`.
 */

/** Where an error happened. Every field is optional; set what is known. */
export interface ErrorContext {
  readonly topic?: string;
  readonly partition?: number;
  readonly offset?: string;
  readonly groupId?: string;
  readonly eventType?: string;
  readonly schemaVersion?: number;
}

export interface AnnalsErrorOptions extends ErrorContext {
  readonly cause?: unknown;
}

/** The base class of every Annals error. Branch on `code`, never on the message. */
export abstract class AnnalsError extends Error {
  abstract readonly code: string;
  /** True when the same call may succeed if tried again (the client's retry loop does so). */
  readonly retriable: boolean = false;
  readonly topic?: string;
  readonly partition?: number;
  readonly offset?: string;
  readonly groupId?: string;
  readonly eventType?: string;
  readonly schemaVersion?: number;

  constructor(message: string, options: AnnalsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    const { cause: _cause, ...context } = options;
    Object.assign(this, context);
  }
}

/**
 * The cleaner's lease is gone: its database session ended, or it was released. Another process
 * may be cleaning now. Acquire a new lease (the in-process cleaner does so on its next tick). Retriable.
 */
export class CleanerLeaseLostError extends AnnalsError {
  readonly code = 'CLEANER_LEASE_LOST' as const;
  override readonly retriable = true;
}

/** A payload did not match its event contract (on publish, or on read after upcasting). */
export class SchemaValidationError extends AnnalsError {
  readonly code = 'SCHEMA_VALIDATION' as const;
  /** The zod issues, unchanged. */
  readonly issues: readonly SchemaIssue[];
  constructor(message: string, issues: readonly SchemaIssue[], options: AnnalsErrorOptions = {}) {
    super(message, options);
    this.issues = issues;
  }
}

/** A zod issue as Annals exposes it (structurally the zod v4 `$ZodIssue`). */
export interface SchemaIssue {
  readonly code: string;
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly [key: string]: unknown;
}

/** An event type the topic (or the registry) does not know. */
export class UnknownEventTypeError extends AnnalsError {
  readonly code = 'UNKNOWN_EVENT_TYPE' as const;
}

/**
 * A record the topic cannot hold: a record without a key sent to a compacted topic
 * (`cleanup.policy` with `compact` keeps the latest record of every key, so every record needs
 * one). Nothing was written. Kafka's INVALID_RECORD.
 */
export class InvalidRecordError extends AnnalsError {
  readonly code = 'INVALID_RECORD' as const;
}

/** A stored event's version has no upcaster path to the latest, or an upcaster threw. */
export class UpcastError extends AnnalsError {
  readonly code = 'UPCAST_FAILED' as const;
}

/**
 * A stored event's `schema-version` is newer than every version this process's contract knows:
 * it was published by a service on a newer contract. A consumer routes it by its
 * `onUnknownVersion` policy (`fail`: the failure policy; `dead-letter`; `read-as-latest-known`
 * when the contract's compatibility mode is `forward` or `full`). Deploy the newer contract to
 * read it fully. A kind of {@link UpcastError} (same code), so existing handling still applies.
 */
export class UnknownSchemaVersionError extends UpcastError {
  /** The newest version this process's contract knows. */
  readonly latestKnownVersion: number;
  constructor(message: string, latestKnownVersion: number, options: AnnalsErrorOptions = {}) {
    super(message, options);
    this.latestKnownVersion = typeof latestKnownVersion === 'number' ? latestKnownVersion : 0;
  }
}

/** What a {@link SchemaVersionConflictError} reports. */
export interface SchemaVersionConflict {
  /** The fingerprint the registry holds for the version. */
  readonly registeredFingerprint: string;
  /** The fingerprint of this process's schema for the same version. */
  readonly localFingerprint: string;
  /** Who registered the version (a client id), if known. */
  readonly registeredBy?: string | null;
  /** A readable diff from the registered schema to the local one, one line per difference. */
  readonly diff: readonly string[];
}

/**
 * The schema registry already holds this event type's version with another schema: the contract
 * was edited in place. Nothing was written. A changed contract needs a new version and an
 * upcaster from the previous one (`versions: { …, n+1: newSchema }, upcast: { n: (old) => … }`).
 */
export class SchemaVersionConflictError extends AnnalsError {
  readonly code = 'SCHEMA_VERSION_CONFLICT' as const;
  readonly registeredFingerprint: string;
  readonly localFingerprint: string;
  readonly registeredBy: string | null;
  readonly diff: readonly string[];
  constructor(message: string, conflict: SchemaVersionConflict, options: AnnalsErrorOptions = {}) {
    super(message, options);
    this.registeredFingerprint = conflict?.registeredFingerprint ?? '';
    this.localFingerprint = conflict?.localFingerprint ?? '';
    this.registeredBy = conflict?.registeredBy ?? null;
    this.diff = Array.isArray(conflict?.diff) ? conflict.diff : [];
  }
}

/**
 * Contracts could not be loaded for the schema gate: no `annals.config.{js,mjs,json}`, a config
 * without `contracts: [...]`, a module that fails to import or exports no contract, or one event
 * type defined twice with different schemas. The message names the file.
 */
export class ContractLoadError extends AnnalsError {
  readonly code = 'CONTRACT_LOAD_FAILED' as const;
}

/** Stored or received bytes could not be decoded (hostile or corrupt input). */
export class CorruptRecordError extends AnnalsError {
  readonly code = 'CORRUPT_MESSAGE' as const;
}

/** A record is larger than the topic's `max.message.bytes`. Nothing was written. */
export class MessageTooLargeError extends AnnalsError {
  readonly code = 'MESSAGE_TOO_LARGE' as const;
  constructor(
    message: string,
    readonly size: number,
    readonly limit: number,
    options: AnnalsErrorOptions = {},
  ) {
    super(message, options);
  }
}

/** A topic name breaks Kafka's rules: `[a-zA-Z0-9._-]`, 1–249 characters, not `.` or `..`. */
export class InvalidTopicError extends AnnalsError {
  readonly code = 'INVALID_TOPIC_EXCEPTION' as const;
}

export class TopicAlreadyExistsError extends AnnalsError {
  readonly code = 'TOPIC_ALREADY_EXISTS' as const;
}

export class UnknownTopicOrPartitionError extends AnnalsError {
  readonly code = 'UNKNOWN_TOPIC_OR_PARTITION' as const;
}

/** A partition count was invalid (zero, negative, or a decrease). */
export class InvalidPartitionsError extends AnnalsError {
  readonly code = 'INVALID_PARTITIONS' as const;
}

/** A topic config key is unknown or its value fails the key's validator. */
export class InvalidConfigError extends AnnalsError {
  readonly code = 'INVALID_CONFIG' as const;
}

/** Client or constructor options failed validation. */
export class InvalidOptionsError extends AnnalsError {
  readonly code = 'INVALID_OPTIONS' as const;
}

/** An offset below the log start offset or above the log end offset was asked for. */
export class OffsetOutOfRangeError extends AnnalsError {
  readonly code = 'OFFSET_OUT_OF_RANGE' as const;
}

/** The connection to PostgreSQL was lost or could not be made. Retriable. */
export class ConnectionError extends AnnalsError {
  readonly code = 'CONNECTION_ERROR' as const;
  override readonly retriable = true;
}

/** A deadlock, serialization failure or lock timeout: the transaction rolled back. Retriable. */
export class ConcurrentTransactionsError extends AnnalsError {
  readonly code = 'CONCURRENT_TRANSACTIONS' as const;
  override readonly retriable = true;
}

/**
 * The connection died while COMMIT was in flight: the transaction may or may not have committed.
 * An idempotent producer retries safely; otherwise the caller must check before writing again.
 */
export class CommitOutcomeUnknownError extends AnnalsError {
  readonly code = 'COMMIT_OUTCOME_UNKNOWN' as const;
}

/** An idempotent producer's sequence number skipped ahead or went back: records may be missing. */
export class OutOfOrderSequenceError extends AnnalsError {
  readonly code = 'OUT_OF_ORDER_SEQUENCE_NUMBER' as const;
}

/** A newer producer with the same `transactionalId` fenced this one. */
export class ProducerFencedError extends AnnalsError {
  readonly code = 'PRODUCER_FENCED' as const;
}

/**
 * A consumer-group member committed (or processed) for a partition it no longer owns: another
 * member has claimed it since (a newer generation). Its transaction was rolled back.
 */
export class IllegalGenerationError extends AnnalsError {
  readonly code = 'ILLEGAL_GENERATION' as const;
}

/** A group operation that needs an empty group (delete, reset offsets) found live members. */
export class GroupNotEmptyError extends AnnalsError {
  readonly code = 'NON_EMPTY_GROUP' as const;
}

/** A consumer-group id that does not exist. */
export class GroupIdNotFoundError extends AnnalsError {
  readonly code = 'GROUP_ID_NOT_FOUND' as const;
}

/** A transaction stayed open longer than `transactionTimeout` and was aborted. */
export class TransactionTimeoutError extends AnnalsError {
  readonly code = 'TRANSACTION_TIMED_OUT' as const;
}

/** A transaction handle was used after commit or abort, or two operations raced on it. */
export class InvalidTransactionStateError extends AnnalsError {
  readonly code = 'INVALID_TXN_STATE' as const;
}

/** The client (or producer, or consumer) is not connected. */
export class NotConnectedError extends AnnalsError {
  readonly code = 'NOT_CONNECTED' as const;
}

/** A database error with no more specific Annals meaning. `sqlState` is Postgres's code. */
export class StorageError extends AnnalsError {
  readonly code = 'STORAGE_ERROR' as const;
  override readonly retriable: boolean;
  constructor(
    message: string,
    readonly sqlState: string | undefined,
    retriable: boolean,
    options: AnnalsErrorOptions = {},
  ) {
    super(message, options);
    this.retriable = retriable;
  }
}

/**
 * A subscriber or projection was declared wrongly: a handler for an event its topics cannot carry,
 * two handlers for one event, a missing event contract, an invalid name or version. Raised when it
 * is defined or registered, never while consuming; the message names the class and method.
 */
export class RegistrationError extends AnnalsError {
  readonly code = 'INVALID_REGISTRATION' as const;
}

/** The embedded PostgreSQL server could not be started or stopped. */
export class EmbeddedServerError extends AnnalsError {
  readonly code = 'EMBEDDED_SERVER_ERROR' as const;
}

/** What a {@link WrongExpectedVersionError} reports about the stream. */
export interface StreamVersionConflict {
  readonly topic: string;
  readonly partition: number;
  /** The stream's key (UTF-8; bytes that are not UTF-8 show as U+FFFD). */
  readonly key: string;
  readonly expectedVersion: number | 'no-stream' | 'any';
  readonly actualVersion: number;
}

/**
 * An append to an event-sourced stream expected the stream at another version: another writer
 * appended first. Nothing of the append was written. Load the stream again, decide again and
 * retry — `annals.aggregates.handle` does so a bounded number of times. Not `retriable`: the
 * same append would fail the same way.
 */
export class WrongExpectedVersionError extends AnnalsError {
  readonly code = 'WRONG_EXPECTED_VERSION' as const;
  readonly key: string;
  readonly expectedVersion: number | 'no-stream' | 'any';
  readonly actualVersion: number;
  constructor(message: string, conflict: StreamVersionConflict, options: AnnalsErrorOptions = {}) {
    super(message, { topic: conflict?.topic, partition: conflict?.partition, ...options });
    this.key = conflict?.key;
    this.expectedVersion = conflict?.expectedVersion;
    this.actualVersion = conflict?.actualVersion;
  }
}

/**
 * Records at the start of an event-sourced stream are gone (removed by `deleteRecords`, or by
 * retention after the topic's config was changed) and no snapshot covers them: its state cannot
 * be rebuilt. Streams belong on topics with `retention.ms = -1` and `cleanup.policy = delete`.
 */
export class StreamTruncatedError extends AnnalsError {
  readonly code = 'STREAM_TRUNCATED' as const;
  /** The stream's key (UTF-8). */
  readonly key: string;
  constructor(message: string, key: string, options: AnnalsErrorOptions = {}) {
    super(message, options);
    this.key = key;
  }
}

/** True for an {@link AnnalsError} whose operation may succeed when tried again. */
export function isRetriable(error: unknown): boolean {
  return error instanceof AnnalsError && error.retriable;
}
