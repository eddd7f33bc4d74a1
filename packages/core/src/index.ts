/**
 * @annals/core — event and topic contracts, codecs, the partitioner, the client, and the storage
 * port. The export list is written out by name: anything not listed here is internal.
 */
import 'reflect-metadata';

export {
  AnnalsError,
  CommitOutcomeUnknownError,
  ConcurrentTransactionsError,
  ConnectionError,
  CorruptRecordError,
  EmbeddedServerError,
  InvalidConfigError,
  InvalidOptionsError,
  InvalidPartitionsError,
  InvalidTopicError,
  InvalidTransactionStateError,
  MessageTooLargeError,
  NotConnectedError,
  OffsetOutOfRangeError,
  ProducerFencedError,
  SchemaValidationError,
  StorageError,
  TopicAlreadyExistsError,
  TransactionTimeoutError,
  UnknownEventTypeError,
  UnknownTopicOrPartitionError,
  UpcastError,
  isRetriable,
} from './errors.js';
export type { AnnalsErrorOptions, ErrorContext, SchemaIssue } from './errors.js';
