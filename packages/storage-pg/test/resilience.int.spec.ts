/**
 * Client resilience on a real PostgreSQL: lost COMMIT acknowledgements (through a proxy that
 * swallows the reply after the server committed), cut connections and terminated backends.
 * After the retries, every acknowledged record is in the log exactly once.
 */
import { Annals, DEFAULT_TOPIC_CONFIG, type AppendRecord, CommitOutcomeUnknownError, ProducerFencedError, TransactionTimeoutError } from '@annals/core';
import { FaultProxy } from '@annals/testing';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { PgLogStorage } from '../src/index.js';
import { adminClient, database, freshAnnals, freshStorage, sleep } from './support.js';

const rec = (key: string, value: string): AppendRecord => ({ key: Buffer.from(key), value: Buffer.from(value), headers: null, timestamp: null });

/** Joins group 'g' on `storage` directly (the storage port), as a member of `topic` that ignores events. */
const joinAsMember = (storage: PgLogStorage, topic: string) =>
  storage.joinGroup('g', { clientId: 'c', clientHost: 'h', topics: [topic], sessionTimeoutMs: 10_000 }, { onGroupChange: () => {}, onAppend: () => {}, onLost: () => {} });

async function readAll(annals: Annals<any>, topic: string, partitions: number): Promise<string[]> {
  const values: string[] = [];
  for (let p = 0; p < partitions; p++) {
    let offset = 0n;
    for (;;) {
      const r = await annals.fetch(topic, p, offset, { maxRecords: 1000 });
      if (r.messages.length === 0) break;
      values.push(...r.messages.map((m) => m.value!.toString()));
      offset = BigInt(r.messages.at(-1)!.offset) + 1n;
    }
  }
  return values;
}

async function throughProxy(schema: string) {
  const direct = new URL(database.connectionString);
  const proxy = new FaultProxy({ target: { host: '127.0.0.1', port: Number(direct.port || 5432) } });
  await proxy.start();
  const annals = new Annals({
    clientId: 'resilience',
    storage: new PgLogStorage({ connectionString: proxy.connectionString(database.connectionString), schema }),
    retry: { retries: 10, initialRetryTime: 20, maxRetryTime: 500 },
  });
  return { proxy, annals };
}

describe('lost commit acknowledgements', () => {
  it('an idempotent producer retries a send whose COMMIT reply was lost, and writes it once', async () => {
    const setup = freshAnnals();
    await setup.admin().createTopics({ topics: [{ topic: 'idem', numPartitions: 3 }] });
    const { proxy, annals } = await throughProxy((setup.storage as PgLogStorage).schema);
    try {
      const producer = annals.producer({ idempotent: true });
      await producer.connect();
      const acknowledged: string[] = [];
      for (let i = 0; i < 120; i++) {
        if (i % 10 === 3) proxy.dropCommitReplies(1);
        if (i % 25 === 11) proxy.cutAll();
        const value = `v${i}`;
        await producer.send({ topic: 'idem', messages: [{ key: `k${i % 7}`, value }] });
        acknowledged.push(value);
      }
      expect(proxy.droppedCommits).toBeGreaterThanOrEqual(10);
      const stored = await readAll(setup, 'idem', 3);
      expect(stored.length).toBe(acknowledged.length);
      expect(new Set(stored)).toEqual(new Set(acknowledged));
    } finally {
      await annals.disconnect();
      await proxy.stop();
    }
  });

  it('a plain producer reports a lost COMMIT reply as an unknown outcome, not as a failure', async () => {
    const setup = freshAnnals();
    await setup.admin().createTopics({ topics: [{ topic: 'plain', numPartitions: 1 }] });
    const { proxy, annals } = await throughProxy((setup.storage as PgLogStorage).schema);
    try {
      // acks: 1 makes the plain producer use BEGIN/COMMIT, which the proxy can intercept.
      const producer = annals.producer();
      await producer.send({ topic: 'plain', messages: [{ value: 'warm-up' }], acks: 1 });
      proxy.dropCommitReplies(1);
      const error = await producer.send({ topic: 'plain', messages: [{ value: 'maybe' }], acks: 1 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CommitOutcomeUnknownError);
      // It did commit: the server processed the COMMIT before the reply was lost.
      expect(await readAll(setup, 'plain', 1)).toEqual(['warm-up', 'maybe']);
    } finally {
      await annals.disconnect();
      await proxy.stop();
    }
  });
});

describe('unresolved outcomes', () => {
  it('regression: after a lost COMMIT reply that retries could not resolve, the next idempotent send is still written', async () => {
    const setup = freshAnnals();
    await setup.admin().createTopics({ topics: [{ topic: 'unresolved', numPartitions: 1 }] });
    const { proxy, annals } = await throughProxy((setup.storage as PgLogStorage).schema);
    try {
      const producer = annals.producer({ idempotent: true, retry: { retries: 0 } });
      await producer.send({ topic: 'unresolved', messages: [{ value: 'first' }] });
      proxy.dropCommitReplies(1);
      await expect(producer.send({ topic: 'unresolved', messages: [{ value: 'maybe' }] })).rejects.toBeInstanceOf(CommitOutcomeUnknownError);
      await producer.send({ topic: 'unresolved', messages: [{ value: 'third' }] });
      expect(await readAll(setup, 'unresolved', 1)).toEqual(['first', 'maybe', 'third']);
    } finally {
      await annals.disconnect();
      await proxy.stop();
    }
  });
});

describe('terminated backends', () => {
  it('idempotent sends keep going while the producer backends are terminated: each acknowledged record once', async () => {
    // A session is terminated every 15 ms and an idempotent send needs a few round trips plus a
    // new connection: give it the retries to get through (the claim here is exactly-once, not
    // how many attempts it takes).
    const annals = new Annals({ clientId: 'test', storage: freshStorage(), retry: { retries: 40, initialRetryTime: 20, maxRetryTime: 250 }, cleaner: false });
    await annals.admin().createTopics({ topics: [{ topic: 'term', numPartitions: 2 }] });
    const admin = await adminClient();
    const producer = annals.producer({ idempotent: true });
    await producer.connect();
    let stop = false;
    let terminated = 0;
    const killer = (async () => {
      while (!stop) {
        await sleep(15);
        // Terminate every other session on this database (ours, the test's admin client, excepted).
        const { rowCount } = await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
        );
        terminated += rowCount ?? 0;
      }
    })();
    const acknowledged: string[] = [];
    try {
      for (let i = 0; i < 150; i++) {
        const value = `t${i}`;
        await producer.send({ topic: 'term', messages: [{ key: `k${i % 5}`, value }] });
        acknowledged.push(value);
      }
    } finally {
      stop = true;
      await killer;
    }
    expect(terminated).toBeGreaterThan(0);
    const stored = await readAll(annals, 'term', 2);
    await annals.disconnect();
    expect(stored.length).toBe(acknowledged.length);
    expect(new Set(stored)).toEqual(new Set(acknowledged));
  }, 60_000);
});

describe('a reader of hand-assigned partitions', () => {
  it('rides out lost connections on its own: a fetch cut off mid-flight is retried, nothing is skipped or read twice', async () => {
    const setup = freshAnnals();
    await setup.admin().createTopics({ topics: [{ topic: 'tail', numPartitions: 1 }] });
    const { proxy, annals } = await throughProxy((setup.storage as PgLogStorage).schema);
    const producer = setup.producer();
    const values: string[] = [];
    const reader = annals.reader({ pollIntervalMs: 100 });
    const until = async (n: number) => {
      for (let i = 0; i < 200 && values.length < n; i++) await sleep(50);
      expect(values).toHaveLength(n);
    };
    try {
      await reader.assign([{ topic: 'tail', partition: 0 }]);
      let failure: unknown;
      const running = reader.run({ eachMessage: async ({ message }) => void values.push(message.value!.toString()) }).catch((e: unknown) => {
        failure = e;
      });
      await producer.send({ topic: 'tail', messages: [{ value: 'a' }] });
      await until(1);
      // Every byte swallowed for 600 ms: the reader's LISTEN connection hears nothing, its next
      // poll's fetch hangs, and both are reset when the hole closes.
      const hole = proxy.blackhole(600);
      await producer.send({ topic: 'tail', messages: [{ value: 'b' }] });
      await hole;
      await until(2);
      // Reset while idle, then a record: the wake-up or the poll finds it on new connections.
      proxy.resetAll();
      await producer.send({ topic: 'tail', messages: [{ value: 'c' }] });
      await until(3);
      expect(proxy.stats.blackholed + proxy.stats.reset).toBeGreaterThan(0);
      await reader.stop();
      await running;
      expect(failure).toBeUndefined();
      expect(values).toEqual(['a', 'b', 'c']);
    } finally {
      await reader.stop();
      await annals.disconnect();
      await proxy.stop();
    }
  });

  it('stop() during a retry ends the reader at once, as a stop and not a failure', async () => {
    const setup = freshAnnals();
    await setup.admin().createTopics({ topics: [{ topic: 'stopping', numPartitions: 1 }] });
    const direct = new URL(database.connectionString);
    const proxy = new FaultProxy({ target: { host: '127.0.0.1', port: Number(direct.port || 5432) } });
    await proxy.start();
    // Long backoffs: without the abort, stop() would wait them out.
    const annals = new Annals({
      clientId: 'stopping',
      storage: new PgLogStorage({ connectionString: proxy.connectionString(database.connectionString), schema: (setup.storage as PgLogStorage).schema, connectionTimeoutMs: 200 }),
      retry: { retries: 10, initialRetryTime: 5_000, maxRetryTime: 5_000 },
    });
    try {
      const reader = annals.reader({ pollIntervalMs: 50 });
      await reader.assign([{ topic: 'stopping', partition: 0 }]);
      const refused = proxy.refuse(3_000);
      proxy.resetAll();
      const running = reader.run({ eachMessage: async () => {} });
      await sleep(500); // its fetch has failed and it is in a 5 s backoff
      const t0 = Date.now();
      await reader.stop();
      await expect(running).resolves.toBeUndefined();
      expect(Date.now() - t0).toBeLessThan(2_000);
      await refused;
    } finally {
      await annals.disconnect();
      await proxy.stop();
    }
  });
});

describe('transactional producers', () => {
  it('a newer producer with the same transactionalId fences the older one', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'fence', numPartitions: 1 }] });
    const older = annals.producer({ transactionalId: 'order-processor-1' });
    await older.connect();
    const tx = await older.transaction();
    await tx.send({ topic: 'fence', messages: [{ value: 'from older' }] });
    const newer = annals.producer({ transactionalId: 'order-processor-1' });
    await newer.connect();
    await expect(tx.commit()).rejects.toBeInstanceOf(ProducerFencedError);
    const tx2 = await newer.transaction();
    await tx2.send({ topic: 'fence', messages: [{ value: 'from newer' }] });
    await tx2.commit();
    const { messages } = await annals.fetch('fence', 0, 0n);
    expect(messages.map((m) => m.value!.toString())).toEqual(['from newer']);
  });

  it('transactionTimeout aborts a transaction left open too long', async () => {
    const annals = freshAnnals();
    await annals.admin().createTopics({ topics: [{ topic: 'slow', numPartitions: 1 }] });
    const producer = annals.producer({ transactionalId: 'slow-1', transactionTimeout: 100 });
    const tx = await producer.transaction();
    await tx.send({ topic: 'slow', messages: [{ value: 'late' }] });
    await sleep(150);
    await expect(tx.commit()).rejects.toBeInstanceOf(TransactionTimeoutError);
    expect((await annals.fetch('slow', 0, 0n)).messages).toEqual([]);
  });
});

describe('server restart', () => {
  it('keeps producing through a PostgreSQL restart without the application doing anything: every acknowledged record once', async () => {
    const { EmbeddedPostgresServer } = await import('../src/index.js');
    const { chmod, mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const dataDir = await mkdtemp(path.join(tmpdir(), 'annals-restart-'));
    await chmod(dataDir, 0o755); // as root, the server runs as another OS user that must enter it
    let server = new EmbeddedPostgresServer({ persistent: true, dataDir: path.join(dataDir, 'pg'), postgresFlags: { fsync: false } });
    const info = await server.start();
    const annals = new Annals({
      clientId: 'restart',
      storage: new PgLogStorage({ connectionString: info.connectionString }),
      retry: { retries: 30, initialRetryTime: 50, maxRetryTime: 500 },
    });
    try {
      await annals.admin().createTopics({ topics: [{ topic: 'durable', numPartitions: 2 }] });
      const producer = annals.producer({ idempotent: true });
      await producer.connect();
      const acknowledged: string[] = [];
      let restarted = false;
      const sends = (async () => {
        for (let i = 0; i < 150; i++) {
          await producer.send({ topic: 'durable', messages: [{ key: `k${i % 3}`, value: `r${i}` }] });
          acknowledged.push(`r${i}`);
          await sleep(5);
        }
      })();
      await sleep(150);
      await server.stop();
      server = new EmbeddedPostgresServer({ persistent: true, dataDir: path.join(dataDir, 'pg'), port: info.port, postgresFlags: { fsync: false } });
      await server.start();
      restarted = true;
      await sends;
      expect(restarted).toBe(true);
      const stored = await readAll(annals, 'durable', 2);
      expect(stored.length).toBe(150);
      expect(new Set(stored)).toEqual(new Set(acknowledged));
    } finally {
      await annals.disconnect();
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('a connect that fails', () => {
  it('regression: leaves no pool behind (it used to keep the half-opened pool, neither usable nor ended)', async () => {
    const url = new URL(database.connectionString);
    url.pathname = '/annals_no_such_database';
    const storage = new PgLogStorage({ connectionString: url.toString(), schema: 'annals' });
    await expect(storage.connect()).rejects.toMatchObject({ name: expect.stringMatching(/Error$/) });
    expect(() => storage.pool).toThrow(/not connected/);
    await storage.disconnect(); // a no-op, and idempotent
  });
});

describe('clients of the storage pool', () => {
  it('regression: carry an error listener from the moment pg-pool hands them over (a FATAL sent with ReadyForQuery used to be an uncaught exception)', async () => {
    const storage = freshStorage();
    await storage.connect();
    const client = await storage.pool.connect();
    try {
      // pg-pool removes its idle listener before resolving connect(): without ours, an 'error'
      // emitted before the caller attaches one crashes the process.
      expect(client.listenerCount('error')).toBeGreaterThan(0);
    } finally {
      client.release();
    }
  });
});

/**
 * A loopback proxy for the next connection: it passes the authentication exchange through, then
 * holds the server's replies from BackendKeyData on, has that backend terminated just after its
 * ReadyForQuery, and delivers ReadyForQuery and the FATAL in one write: the client's parser meets
 * both in one chunk, in one tick.
 */
async function fatalWithReadyProxy(terminate: (pid: number) => Promise<void>) {
  const direct = new URL(database.connectionString);
  let armed = false;
  let delivered = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(direct.port || 5432), '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    if (!armed) return void upstream.pipe(client);
    armed = false;
    let pending = Buffer.alloc(0);
    const held: Buffer[] = [];
    let holding = false;
    let sawReady = false;
    const flush = () => {
      client.end(Buffer.concat([...held, pending]));
      delivered++;
    };
    upstream.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && !client.writableEnded) {
        const length = 1 + pending.readInt32BE(1);
        if (length > pending.length) break;
        const message = pending.subarray(0, length);
        pending = pending.subarray(length);
        const type = String.fromCharCode(message[0]!);
        // Authentication (which may need the client's answers) passes; BackendKeyData starts the hold.
        if (type === 'K') holding = true;
        if (!holding) {
          client.write(message);
          continue;
        }
        held.push(message);
        if (type === 'K') void terminate(message.readInt32BE(5));
        if (type === 'Z') sawReady = true;
        if (type === 'E' && sawReady) flush();
      }
    });
    upstream.on('end', () => {
      if (sawReady && !client.writableEnded) flush();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(database.connectionString);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    connectionString: url.toString(),
    arm: () => void (armed = true),
    get delivered() {
      return delivered;
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A storage of the given schema whose connections go through {@link fatalWithReadyProxy}: on an
 * application's pool of `poolMax` clients, or (`poolMax` 0) on its own connection string.
 * `doomed(call)` arms the proxy, runs the call (which opens or checks out the doomed connection)
 * and checks that it failed retriably, with no uncaught exception on the way.
 */
async function withDoomedConnection(
  schema: string,
  options: { migrate: boolean; poolMax: number },
  body: (storage: PgLogStorage, doomed: (call: () => Promise<unknown>) => Promise<void>) => Promise<void>,
) {
  const admin = await adminClient();
  const proxy = await fatalWithReadyProxy(async (pid) => {
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  });
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  const pool = options.poolMax > 0 ? new pg.Pool({ connectionString: proxy.connectionString, max: options.poolMax }) : undefined;
  pool?.on('error', () => {});
  const storage = new PgLogStorage({ ...(pool ? { pool } : { connectionString: proxy.connectionString }), schema, migrate: options.migrate });
  try {
    await body(storage, async (call) => {
      proxy.arm();
      const outcome = await call().then(
        () => 'succeeded',
        (error: unknown) => error,
      );
      expect(proxy.delivered).toBe(1);
      await sleep(50);
      expect(uncaught).toEqual([]);
      // A connection failure the caller may retry (nothing was sent), not a crash.
      expect(outcome).toMatchObject({ retriable: true });
    });
  } finally {
    process.off('uncaughtException', onUncaught);
    await storage.disconnect();
    await pool?.end();
    await proxy.stop();
  }
}

describe('clients of a pool the application passes in', () => {
  it('regression: a backend whose FATAL arrives with its ReadyForQuery is a failed call, never an uncaught exception', async () => {
    const setup = freshStorage();
    await setup.connect();
    await setup.createTopics([{ name: 'user-pool', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    await withDoomedConnection(setup.schema, { migrate: false, poolMax: 2 }, async (storage, doomed) => {
      await storage.connect();
      // The append checks a client out of the application's pool: the one the proxy doomed.
      await doomed(() => storage.append([{ topic: 'user-pool', partition: 0, records: [rec('k', 'a')] }]));
      // The pool goes on serving, and only the second append was written.
      await storage.append([{ topic: 'user-pool', partition: 0, records: [rec('k', 'b')] }]);
      const read = await setup.fetch('user-pool', 0, 0n, { maxRecords: 10, maxBytes: 1 << 20 });
      expect(read.records.map((r) => r.value!.toString())).toEqual(['b']);
    });
  });

  it('regression: the same during migrations, which Kysely runs on clients of that pool', async () => {
    await withDoomedConnection(`t_${randomBytes(5).toString('hex')}`, { migrate: true, poolMax: 2 }, async (storage, doomed) => {
      await doomed(() => storage.connect());
      // Connecting again applies the migrations: the log works.
      await storage.connect();
      await storage.createTopics([{ name: 'migrated', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
      await storage.append([{ topic: 'migrated', partition: 0, records: [rec('k', 'v')] }]);
    });
  });

  it('regression: the LISTEN connection of a watcher, on that pool: a failed start leaks no client and leaves no registration behind', async () => {
    const setup = freshStorage();
    await setup.connect();
    await setup.createTopics([{ name: 'watched', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    // Two clients: the LISTEN connection holds one, registering the watch needs the other, which a
    // client kept checked out after the failed start would have taken for good.
    await withDoomedConnection(setup.schema, { migrate: false, poolMax: 2 }, async (storage, doomed) => {
      await storage.connect();
      const calls: string[] = [];
      await doomed(() => storage.watch(['watched'], (topic, partition) => void calls.push(`doomed ${topic}/${partition}`)));
      let wake!: () => void;
      const woken = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the second watcher was never woken')), 10_000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      const stop = await storage.watch(['watched'], (topic, partition) => {
        calls.push(`${topic}/${partition}`);
        wake();
      });
      await setup.append([{ topic: 'watched', partition: 0, records: [rec('k', 'v')] }]);
      await woken;
      await stop();
      expect(calls.filter((c) => c.startsWith('doomed'))).toEqual([]);
    });
  });

  it("regression: a group session's connection, on that pool: a failed start gives its client back", async () => {
    const setup = freshStorage();
    await setup.connect();
    await setup.createTopics([{ name: 'grouped', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    await withDoomedConnection(setup.schema, { migrate: false, poolMax: 2 }, async (storage, doomed) => {
      await storage.connect();
      await doomed(() => joinAsMember(storage, 'grouped'));
      // A session holds one of the two clients; the append needs the other, which a client kept
      // checked out after the failed start would have taken for good.
      const session = await joinAsMember(storage, 'grouped');
      const appended = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the append never got a client')), 10_000);
        storage.append([{ topic: 'grouped', partition: 0, records: [rec('k', 'v')] }]).then((r) => {
          clearTimeout(timer);
          resolve(r);
        }, reject);
      });
      expect(appended).toHaveLength(1);
      await session.leave();
    });
  });

  it('regression: a group session whose leave() could not clean up does not go back to that pool still holding its partition locks', async () => {
    const setup = freshStorage();
    await setup.connect();
    await setup.createTopics([{ name: 'owned', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    const admin = await adminClient();
    const advisoryLocks = async () =>
      Number(
        (await admin.query("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rows[0].n,
      );
    // The application's pool cuts statements off after 300 ms.
    const pool = new pg.Pool({ connectionString: database.connectionString, max: 1, statement_timeout: 300 });
    pool.on('error', () => {});
    const storage = new PgLogStorage({ pool, schema: setup.schema, migrate: false });
    const blocker = await adminClient();
    try {
      await storage.connect();
      const session = await joinAsMember(storage, 'owned');
      expect(await session.claim('owned', 0)).toMatchObject({ acquired: true });
      expect(await advisoryLocks()).toBe(1);
      // Another transaction holds the member's row: leave()'s DELETE waits, and is cut off.
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM "${setup.schema}".group_members WHERE group_id = 'g' FOR UPDATE`);
      await session.leave();
      await blocker.query('ROLLBACK');
      // The session's connection was closed, so its lock went with it.
      for (let i = 0; i < 40 && (await advisoryLocks()) > 0; i++) await sleep(50);
      expect(await advisoryLocks()).toBe(0);
      // And the pool serves on, with a new connection.
      await storage.append([{ topic: 'owned', partition: 0, records: [rec('k', 'v')] }]);
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await storage.disconnect();
      await pool.end();
    }
  });

  it('regression: clients handed back to that pool carry no listeners of the sessions that used them', async () => {
    const setup = freshStorage();
    await setup.connect();
    await setup.createTopics([{ name: 'reused', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    const pool = new pg.Pool({ connectionString: database.connectionString, max: 2 });
    pool.on('error', () => {});
    const storage = new PgLogStorage({ pool, schema: setup.schema, migrate: false });
    try {
      await storage.connect();
      for (let i = 0; i < 5; i++) {
        const session = await joinAsMember(storage, 'reused');
        await session.leave();
        const lease = await storage.cleaner.acquireCleaner();
        await lease!.release();
      }
      // A watcher's LISTEN connection goes back when the storage disconnects.
      const unwatch = await storage.watch(['reused'], () => {});
      await unwatch();
      await storage.disconnect();
      const clients = [await pool.connect(), await pool.connect()];
      try {
        // At most the guard's no-op 'error' listener is left on each (none on a client never lent to Annals).
        for (const client of clients) {
          expect(client.listenerCount('error')).toBeLessThanOrEqual(1);
          expect([client.listenerCount('end'), client.listenerCount('notification')]).toEqual([0, 0]);
        }
      } finally {
        for (const client of clients) client.release();
      }
    } finally {
      await storage.disconnect();
      await pool.end();
    }
  });
});

describe('a storage on its own connection string', () => {
  it('regression: a LISTEN connection whose FATAL arrives with its ReadyForQuery fails watch(), never the process', async () => {
    const setup = freshStorage();
    await setup.connect();
    await setup.createTopics([{ name: 'watched', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    await withDoomedConnection(setup.schema, { migrate: false, poolMax: 0 }, async (storage, doomed) => {
      await storage.connect();
      await doomed(() => storage.watch(['watched'], () => {}));
      // Watching again opens a new LISTEN connection.
      const stop = await storage.watch(['watched'], () => {});
      await stop();
    });
  });
});

describe('dedicated connections (group sessions, LISTEN)', () => {
  it('regression: a connect into a black hole fails after connectionTimeoutMs, like the pool, instead of hanging', async () => {
    const setup = freshStorage();
    await setup.connect();
    await setup.createTopics([{ name: 'holed', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    const direct = new URL(database.connectionString);
    const proxy = new FaultProxy({ target: { host: '127.0.0.1', port: Number(direct.port || 5432) } });
    await proxy.start();
    const storage = new PgLogStorage({ connectionString: proxy.connectionString(database.connectionString), schema: setup.schema, migrate: false, connectionTimeoutMs: 300 });
    try {
      await storage.connect();
      const hole = proxy.blackhole(4_000);
      for (const call of [() => joinAsMember(storage, 'holed'), () => storage.watch(['holed'], () => {})]) {
        const t0 = Date.now();
        await expect(call()).rejects.toMatchObject({ retriable: true });
        expect(Date.now() - t0).toBeLessThan(2_500);
      }
      await hole;
    } finally {
      await storage.disconnect();
      await proxy.stop();
    }
  });
});

describe('a storage whose connection string comes from a provider (the embedded server)', () => {
  it('regression: concurrent watch() calls share one LISTEN connection, and disconnect() closes it', async () => {
    const setup = freshStorage();
    await setup.connect();
    await setup.createTopics([{ name: 'watched', partitions: 1, config: DEFAULT_TOPIC_CONFIG }]);
    const application = `watch-race-${randomBytes(4).toString('hex')}`;
    const url = new URL(database.connectionString);
    url.searchParams.set('application_name', application);
    const storage = new PgLogStorage({
      // Resolving takes a moment, as starting a server does: both watch() calls wait on it.
      connectionStringProvider: async () => {
        await sleep(30);
        return url.toString();
      },
      schema: setup.schema,
      migrate: false,
    });
    const admin = await adminClient();
    const listening = async () =>
      Number((await admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'", [application])).rows[0].n);
    try {
      await storage.connect();
      const stops = await Promise.all([storage.watch(['watched'], () => {}), storage.watch(['watched'], () => {})]);
      expect(await listening()).toBe(1);
      for (const stop of stops) await stop();
      await storage.disconnect();
      for (let i = 0; i < 40 && (await listening()) > 0; i++) await sleep(50);
      expect(await listening()).toBe(0);
    } finally {
      await storage.disconnect();
    }
  });
});
