// Same-run A/B/C: commit latency of a steady single-row-insert loop (150/s, open loop, 4 connections)
// in fixed 1.5 s windows: idle; dropping full 90,000-row segment-shaped tables back to back; dropping
// empty tables of the same shape back to back (same catalog work and synchronous commits, no file to free).
import pg from 'pg';
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const S = 'annals_cleanbench_dropab';
const ROUNDS = 6, FULL = 7, EMPTY = 150, WIN = 1500;
const admin = new pg.Client({ connectionString: url }); await admin.connect();
const pool = new pg.Pool({ connectionString: url, max: 4 });
await admin.query(`DROP SCHEMA IF EXISTS ${S} CASCADE; CREATE SCHEMA ${S}; CREATE TABLE ${S}.sink (id bigserial primary key, v bytea)`);
const shape = `(topic text NOT NULL, partition int NOT NULL, "offset" bigint NOT NULL, "timestamp" timestamptz NOT NULL, key bytea, value bytea, headers bytea, PRIMARY KEY (topic, partition, "offset"))`;
await admin.query(`CREATE TABLE ${S}.src ${shape}`);
await admin.query(`INSERT INTO ${S}.src SELECT 't', 0, g, now(), convert_to('customer-' || ((g * 2654435761) % 10007), 'UTF8'), convert_to(g || '|' || repeat('x', 198), 'UTF8'), NULL FROM generate_series(0, 89999) g`);
for (let r = 0; r < ROUNDS; r++) {
  for (let i = 0; i < FULL; i++) {
    await admin.query(`CREATE TABLE ${S}.f${r}_${i} ${shape}; CREATE INDEX ON ${S}.f${r}_${i} (topic, partition, "offset") WHERE value IS NULL; INSERT INTO ${S}.f${r}_${i} SELECT * FROM ${S}.src`);
  }
  for (let i = 0; i < EMPTY; i++) await admin.query(`CREATE TABLE ${S}.e${r}_${i} ${shape}; CREATE INDEX ON ${S}.e${r}_${i} (topic, partition, "offset") WHERE value IS NULL`);
}
await admin.query(`VACUUM ${S}.src`);
const { rows: sz } = await admin.query(`SELECT pg_size_pretty(pg_total_relation_size('${S}.f0_0')) s`);
await admin.query('CHECKPOINT');
const samples = []; let running = true; const value = Buffer.alloc(200, 120);
const loop = (async () => {
  const t0 = performance.now(); let n = 0; const pending = new Set();
  while (running) {
    const due = Math.floor((performance.now() - t0) / (1000 / 150)) + 1;
    while (n < due) { n++; const at = performance.now(); const p = pool.query(`INSERT INTO ${S}.sink (v) VALUES ($1)`, [value]).then(() => samples.push({ at, l: performance.now() - at })); pending.add(p); p.finally(() => pending.delete(p)); }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
})();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.min(s.length, Math.max(1, Math.ceil(p / 100 * s.length))) - 1] : NaN; };
const med = (xs) => pct(xs, 50);
const res = { idle: [], full: [], empty: [] };
const window = async (kind, r) => {
  const a = performance.now(); let drops = 0;
  if (kind === 'idle') await sleep(WIN);
  else { const max = kind === 'full' ? FULL : EMPTY; while (performance.now() - a < WIN && drops < max) { await admin.query(`DROP TABLE ${S}.${kind[0]}${r}_${drops}`); drops++; } const left = WIN - (performance.now() - a); if (left > 0) await sleep(left); }
  const b = performance.now();
  await sleep(300);
  const xs = samples.filter((s) => s.at >= a && s.at < b).map((s) => s.l);
  res[kind].push({ p50: pct(xs, 50), p99: pct(xs, 99), n: xs.length, drops });
};
await sleep(1000);
const orders = [['idle', 'full', 'empty'], ['empty', 'full', 'idle'], ['full', 'idle', 'empty'], ['idle', 'empty', 'full'], ['full', 'empty', 'idle'], ['empty', 'idle', 'full']];
for (let r = 0; r < ROUNDS; r++) for (const k of orders[r % orders.length]) await window(k, r);
running = false; await loop;
console.log(`full table ${sz[0].s}; windows of ${WIN} ms; ${ROUNDS} rounds`);
for (const [k, v] of Object.entries(res)) console.log(`${k.padEnd(5)}: p50 ${v.map((x) => x.p50.toFixed(1)).join('/')} (median ${med(v.map((x) => x.p50)).toFixed(1)}); p99 ${v.map((x) => x.p99.toFixed(1)).join('/')} (median ${med(v.map((x) => x.p99)).toFixed(1)}); drops ${v.map((x) => x.drops).join('/')}; n ${v.map((x) => x.n).join('/')}`);
await admin.query(`DROP SCHEMA ${S} CASCADE`); await admin.end(); await pool.end();
