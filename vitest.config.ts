import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Workspace packages load from src/ through the source condition: no build needed for tests.
  ssr: { resolve: { conditions: ['@annals/source'] } },
  // Legacy decorators + metadata + TS class-field semantics for every file, even ones a tsconfig excludes.
  oxc: {
    decorator: { legacy: true, emitDecoratorMetadata: true },
    assumptions: { setPublicClassFields: true },
    typescript: { removeClassFieldsWithoutInitializer: true },
  },
  test: {
    include: ['packages/*/src/**/*.spec.ts', 'packages/*/test/**/*.spec.ts', 'examples/**/*.spec.ts', 'chaos/**/*.spec.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    environment: 'node',
    setupFiles: ['reflect-metadata'],
    globalSetup: ['packages/testing/src/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
