import { defineConfig, mergeConfig } from 'vitest/config';
import base from '../../../vitest.config.ts';
export default mergeConfig(base, defineConfig({
  root: '/work/main',
  test: { include: ['examples/docs-snippets/.scratch/**/*.scratch.ts'] },
}));
