import { it, expect } from 'vitest';
import { Annals } from '@annals/core';
import { postgres } from '@annals/storage-pg';
import { FaultProxy } from '@annals/testing';
import pg from 'pg';

const url = process.env.DATABASE_URL!;
it('idempotent send after a send whose outcome stayed unknown', async () => {
  const schema = 'docsprobe_' + Date.now();
  const setup = new Annals({ clientId: 'setup', storage: postgres({ connectionString: url, schema }) });
  await setup.admin().createTopics({ topics: [{ topic: 't' }] });
  const proxy = new FaultProxy({ target: { host: '127.0.0.1', port: 5432 } });
  await proxy.start();
  const annals = new Annals({ clientId: 'p', storage: postgres({ connectionString: proxy.connectionString(url), schema }) });
  const producer = annals.producer({ idempotent: true, retry: { retries: 0 } });
  await producer.send({ topic: 't', messages: [{ value: 'first' }] });
  proxy.dropCommitReplies(1);
  const e = await producer.send({ topic: 't', messages: [{ value: 'maybe' }] }).catch((x) => x);
  console.log('second send:', e?.code);
  const third = await producer.send({ topic: 't', messages: [{ value: 'third' }] });
  console.log('third send metadata', third);
  const { messages } = await setup.fetch('t', 0, 0n);
  console.log('log:', messages.map((m) => m.value!.toString()));
  await annals.disconnect(); await proxy.stop(); await setup.disconnect();
  const pool = new pg.Pool({ connectionString: url }); await pool.query(`DROP SCHEMA ${schema} CASCADE`); await pool.end();
  expect(messages.map((m) => m.value!.toString())).toContain('third');
});
