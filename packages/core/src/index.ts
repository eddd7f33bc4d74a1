/**
 * @annals/core — event and topic contracts, codecs, the partitioner, the client, and the storage
 * port. The export list is written out by name: anything not listed here is internal.
 */
import 'reflect-metadata';

export {
  AnnalsError,
  CommitOutcomeUnknownError,
  CleanerLeaseLostError,
  InvalidRecordError,
  ConcurrentTransactionsError,
  ConnectionError,
  CorruptRecordError,
  EmbeddedServerError,
  GroupIdNotFoundError,
  GroupNotEmptyError,
  IllegalGenerationError,
  InvalidConfigError,
  InvalidOptionsError,
  InvalidPartitionsError,
  InvalidTopicError,
  InvalidTransactionStateError,
  MessageTooLargeError,
  NotConnectedError,
  OffsetOutOfRangeError,
  OutOfOrderSequenceError,
  ProducerFencedError,
  RegistrationError,
  SchemaValidationError,
  StorageError,
  StreamTruncatedError,
  TopicAlreadyExistsError,
  TransactionTimeoutError,
  UnknownEventTypeError,
  UnknownSchemaVersionError,
  UnknownTopicOrPartitionError,
  UpcastError,
  SchemaVersionConflictError,
  ContractLoadError,
  WrongExpectedVersionError,
  isRetriable,
} from './errors.js';
export type { AnnalsErrorOptions, ErrorContext, SchemaIssue, SchemaVersionConflict, StreamVersionConflict } from './errors.js';

export { defineEvent, isEventContract } from './contracts/event.js';
export { EventClass } from './contracts/event-class.js';
export type { EventClassType } from './contracts/event-class.js';
export type {
  AnySchema,
  EventContract,
  EventDefinitionInput,
  EventInputOf,
  EventOf,
  LatestVersion,
  Upcasters,
  VersionMap,
} from './contracts/event.js';
export { defineTopic, isTopicContract } from './contracts/topic.js';
export { COMPATIBILITY_MODES, DEFAULT_COMPATIBILITY } from './contracts/compatibility-mode.js';
export type { CompatibilityMode } from './contracts/compatibility-mode.js';
export type { KeyValue, TopicContract, TopicDefinitionInput } from './contracts/topic.js';
export {
  DEFAULT_TOPIC_CONFIG,
  TOPIC_CONFIG_KEYS,
  describeTopicConfigKeys,
  isTopicConfigKey,
  resolveTopicConfig,
  topicConfigEntries,
} from './contracts/topic-config.js';
export type { CleanupPolicy, ConfigEntry, TopicConfig, TopicConfigInput, TopicConfigKey } from './contracts/topic-config.js';
export { MAX_TOPIC_NAME_LENGTH, validateTopicName } from './contracts/topic-name.js';
export type * from './storage/log-storage.js';
export type * from './storage/stream-storage.js';
export type * from './storage/projection-storage.js';
export type * from './storage/cleaner-storage.js';
export type {
  RegisterSchemasOptions,
  RegisterSchemasResult,
  RegisteredSchema,
  SchemaRegistration,
  SchemaRegistrationConflict,
  SchemaRegistryStorage,
} from './storage/schema-registry.js';
export { invalidRegistrations } from './storage/schema-registry.js';

export { canonicalJson, fingerprintOf, normalizeJsonSchema, versionSchemaOf } from './schema/json-schema.js';
export type { JsonSchema, VersionSchema } from './schema/json-schema.js';
export { readerIncompatibilities } from './schema/compatibility.js';
export type { SchemaIncompatibility } from './schema/compatibility.js';
export { diffJsonSchemas } from './schema/schema-diff.js';
export { CONTRACT_SNAPSHOT_FORMAT, checkContracts, parseContractSnapshot, resolveContractEvents, snapshotContracts } from './schema/contracts-gate.js';
export type {
  CheckContractsInput,
  CheckContractsResult,
  ContractChange,
  ContractList,
  ContractSnapshot,
  SnapshotEvent,
} from './schema/contracts-gate.js';
export { pushContracts } from './schema/push-contracts.js';
export type { PushContractsInput, PushContractsResult } from './schema/push-contracts.js';
export { ANNALS_CONFIG_FILES, loadAnnalsConfig, loadContracts } from './schema/load-contracts.js';
export type { AnnalsConfig, AnnalsConfigInput, LoadConfigOptions, LoadedContracts } from './schema/load-contracts.js';

export { Annals } from './client/annals.js';
export type { AnnalsInput, TransactionOptions } from './client/annals.js';
export { Admin, ConfigResourceTypes } from './client/admin.js';
export type {
  AlterConfigResource,
  ConfigEntryDescription,
  CreateTopicsOptions,
  DescribeConfigResource,
  DescribeConfigResponse,
  ITopicConfig,
  PartitionMetadata,
  TopicMetadataDescription,
} from './client/admin.js';
export { Producer, ProducerTransaction } from './client/producer.js';
export type { ProducerBatch, ProducerInput, ProducerRecord } from './client/producer.js';
export type { PublishOptions } from './client/prepare.js';
export type { AnnalsTransaction } from './client/transaction.js';
export { Cleaner } from './client/cleaner.js';
export type { CleanerInput, CleanerRunOptions, CleanerRunResult } from './client/cleaner.js';
export { Consumer, ConsumerEvents } from './client/consumer.js';
export type {
  Batch,
  ConsumerEventName,
  ConsumerInput,
  ConsumerRunConfig,
  EachBatchPayload,
  EachEventPayload,
  EachMessagePayload,
  FailurePolicy,
  HandlerTransaction,
  InstrumentationEvent,
} from './client/consumer.js';
export { assignPartitions } from './client/assignors.js';
export type { AssignmentStrategy, TopicPartition } from './client/assignors.js';
export type { DescribeLagOptions, GroupLag, LagDescription, OffsetResetTarget } from './client/admin.js';
export { PartitionReader } from './client/reader.js';
export type { Assignment, ReaderBatch, ReaderInput, ReaderRunInput, StartOffset } from './client/reader.js';
export type { IHeaders, KafkaMessage, Message, RecordMetadata } from './client/messages.js';
export {
  CONTENT_TYPE_HEADER,
  EVENT_TYPE_HEADER,
  SCHEMA_VERSION_HEADER,
  UNKNOWN_VERSION_POLICIES,
  compatibilityOf,
  decodeEvent,
  CodecRegistry,
} from './client/events.js';
export type { DecodedEvent, DecodeOptions, UnknownVersionPolicy } from './client/events.js';
export { backoff, resolveRetry, withRetry } from './client/retry.js';
export type { Retry, RetryInput } from './client/retry.js';

export { On, Projection, Subscriber, decoratedClasses, definitionOf, isDecoratedClass } from './framework/decorators.js';
export { defineProjection, defineSubscriber, isProjectionDefinition, isSubscriberDefinition, on } from './framework/definitions.js';
export type {
  EventsOfTopics,
  HandlerEntry,
  ProjectionConsumerOptions,
  ProjectionDefinition,
  ProjectionDefinitionInput,
  ProjectionOptions,
  SubscriberConsumerOptions,
  SubscriberDefinition,
  SubscriberDefinitionInput,
  SubscriberOptions,
} from './framework/definitions.js';
export type { DocumentStore, EventMetadata, HandlerContext, HandlerTx, ProjectionContext, ProjectionSetupContext } from './framework/context.js';
export { projectionGroupId } from './framework/projection-runner.js';
export type { ProjectionRunState, RebuildOptions, RebuildProgress, RebuildResult } from './framework/projection-runner.js';
export type { HandlerStats } from './framework/subscriber-runner.js';
export type {
  ProjectionCheckpoint,
  ProjectionStatus,
  ProjectionVersionReport,
  Projections,
  RegisterOptions,
  Registrable,
  Registration,
} from './framework/runtime.js';

export { defineDecider, isDecider } from './aggregates/decider.js';
export type {
  AnyEventContract,
  CommandOf,
  Decider,
  DeciderInput,
  EventData,
  EventsOfDecider,
  EventsOfTopic,
  NewEvent,
  SnapshotPolicy,
  SnapshotPolicyInput,
  StateOf,
  StreamEvent,
} from './aggregates/decider.js';
export { Aggregates, TransactionAggregates } from './aggregates/aggregates.js';
export type {
  AggregateState,
  AppendToStreamOptions,
  CarriesEvents,
  HandleOptions,
  HandleResult,
  LoadedStream,
  StreamAppended,
  StreamKey,
  TransactionHandleResult,
} from './aggregates/aggregates.js';

export { jsonCodec, msgpackCodec, resolveDecodeLimits } from './codec/index.js';
export type { Codec, DecodeLimits, DecodeLimitsInput, JsonCodecOptions, MsgpackCodecOptions } from './codec/index.js';
export { murmur2, partitionFor, toPositive } from './partitioner.js';
