/**
 * @annals/testing — test helpers for Annals users and for Annals itself: an in-memory log, the
 * storage conformance suite, a throw-away database per spec file, and a fault-injection proxy.
 * The export list is written out by name.
 */
export { FaultProxy } from './fault-proxy.js';
export type { FaultProxyOptions } from './fault-proxy.js';
export * from './harness.js';
export { InMemoryDatabase, InMemoryLogStorage } from './in-memory-log-storage.js';
export type { InMemoryLogStorageInput, InMemoryTable, InMemoryTables, TableSchema, UntypedTables } from './in-memory-log-storage.js';
export { describeLogStorageConformance } from './conformance.js';
export { DeciderSpecification } from './decider-spec.js';
export type { DeciderGiven, DeciderThen, DeciderWhen, ErrorExpectation } from './decider-spec.js';
export { event, eventOfVersion, given } from './given-when-then.js';
export type { Expectation, Given, GivenEvent, Outcome, PublishedEvent, When, WhenOptions } from './given-when-then.js';
export { InMemoryProjectionStore } from './in-memory-projection-store.js';
export { InMemorySchemaRegistry } from './in-memory-schema-registry.js';
export type { ConformanceOptions, ConformanceStore } from './conformance.js';
