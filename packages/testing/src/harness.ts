/**
 * The test-harness names for `@annals/testing`'s entry point. `global-setup.ts` is not exported:
 * vitest loads it by path (`globalSetup` in vitest.config.ts).
 */
export { createTestDatabase, redactConnectionString, useTestDatabase } from './test-database.js';
export type { TestDatabase, TestDatabaseHandle, UseTestDatabaseInput } from './test-database.js';
