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
export type { ConformanceOptions, ConformanceStore } from './conformance.js';
