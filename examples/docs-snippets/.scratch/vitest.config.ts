import base from '../../../vitest.config.ts';
const cfg: any = { ...base, root: '/work/main', test: { ...(base as any).test, include: ['examples/docs-snippets/.scratch/**/*.scratch.ts'] } };
export default cfg;
