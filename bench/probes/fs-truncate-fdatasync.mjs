// Filesystem only: fdatasync latency of 8 kB appends to a preallocated file (150/s) while 27 MB files are
// truncated to 0 (what PostgreSQL does to a dropped relation's main fork at commit), vs idle windows.
import fs from 'node:fs';
const dir = process.env.PROBE_DIR ?? '/tmp/annals-fsprobe'; fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir, { recursive: true });
const ROUNDS = 6, FILES = 7, WIN = 1500, MB27 = 27 * 1024 * 1024;
const chunk = Buffer.alloc(1024 * 1024, 7);
for (let r = 0; r < ROUNDS; r++) for (let i = 0; i < FILES; i++) { const fd = fs.openSync(`${dir}/f${r}_${i}`, 'w'); for (let m = 0; m < 27; m++) fs.writeSync(fd, chunk); fs.fsyncSync(fd); fs.closeSync(fd); }
const wal = fs.openSync(`${dir}/wal`, 'w'); fs.writeSync(wal, Buffer.alloc(16 * 1024 * 1024)); fs.fsyncSync(wal);
const page = Buffer.alloc(8192, 1);
const samples = []; let running = true;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// the sync loop runs in a worker-free way: one fdatasync at a time, paced at 150/s
const loop = (async () => { let pos = 0; const t0 = performance.now(); let n = 0;
  while (running) { const due = Math.floor((performance.now() - t0) / (1000 / 150)) + 1;
    if (n < due) { n++; const at = performance.now(); await new Promise((res) => fs.write(wal, page, 0, page.length, pos, () => fs.fdatasync(wal, () => res()))); samples.push({ at, l: performance.now() - at }); pos = (pos + 8192) % (16 * 1024 * 1024); }
    else await sleep(1); } })();
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.min(s.length, Math.max(1, Math.ceil(p / 100 * s.length))) - 1] : NaN; };
const res = { idle: [], truncate: [] };
await sleep(1000);
for (let r = 0; r < ROUNDS; r++) for (const k of r % 2 ? ['truncate', 'idle'] : ['idle', 'truncate']) {
  const a = performance.now(); const ts = [];
  if (k === 'idle') await sleep(WIN); else { for (let i = 0; i < FILES; i++) { const t = performance.now(); await fs.promises.truncate(`${dir}/f${r}_${i}`, 0); ts.push(performance.now() - t); await sleep(50); } const left = WIN - (performance.now() - a); if (left > 0) await sleep(left); }
  const b = performance.now(); await sleep(300);
  const xs = samples.filter((s) => s.at >= a && s.at < b).map((s) => s.l);
  res[k].push({ p50: pct(xs, 50), p99: pct(xs, 99), max: Math.max(...xs), n: xs.length, ts });
}
running = false; await loop;
for (const [k, v] of Object.entries(res)) console.log(`${k.padEnd(8)}: fdatasync p50 ${v.map((x) => x.p50.toFixed(1)).join('/')} (median ${pct(v.map((x) => x.p50), 50).toFixed(1)}); p99 ${v.map((x) => x.p99.toFixed(1)).join('/')} (median ${pct(v.map((x) => x.p99), 50).toFixed(1)}) ms${k === 'truncate' ? `; truncate ms ${v.map((x) => x.ts.map((t) => t.toFixed(0)).join(',')).join(' | ')}` : ''}`);
fs.rmSync(dir, { recursive: true, force: true });
