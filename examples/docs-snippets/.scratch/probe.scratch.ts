import { it, expect } from 'vitest';
import { Annals, defineEvent, defineTopic } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import { z } from 'zod';
it('probe', async () => {
  const annals = new Annals({ clientId: 'probe', storage: postgres({ connectionString: process.env.DATABASE_URL!, schema: 'probe_' + Date.now() }) });
  await annals.admin().createTopics({ topics: [{ topic: 't', numPartitions: 3 }] });
  const p = annals.producer();
  const r = await p.send({ topic: 't', messages: [{ key: 'a', value: 'x' }, { key: 'b', value: 'y' }] });
  console.log(r);
  const r2 = await (await p.transaction()).send({ topic: 't', messages: [{ value: 'z' }] });
  console.log('tx send returns', r2);
  await annals.disconnect();
});
