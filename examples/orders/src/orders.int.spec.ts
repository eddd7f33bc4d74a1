/** The orders example end to end, on this file's database: what `npm run demo` shows, asserted. */
import { useTestDatabase } from '@annals/testing';
import { expect, it } from 'vitest';
import { runOrdersDemo } from './demo.js';

const database = useTestDatabase();

it('runs the orders story: every order charged and notified once, order-totals v2 rebuilt, swapped and matching', async () => {
  const lines: string[] = [];
  const outcome = await runOrdersDemo({ connectionString: database.connectionString, orders: 120, log: (l) => lines.push(l) });
  expect(outcome.charges).toBe(outcome.ordersPlaced);
  expect(outcome.notificationsSent).toBe(outcome.ordersPlaced);
  expect(outcome.membersThatCharged).toBeGreaterThanOrEqual(2);
  expect(new Map(outcome.totals)).toEqual(outcome.expected);
  expect(outcome.profiles).toHaveLength(10);
  expect(outcome.rebuild).toMatchObject({ phase: 'done', version: 2 });
  expect(lines.some((l) => l.includes('rebalancing'))).toBe(true);
  expect(lines.some((l) => l.includes('swapped: v1 retired, v2 active'))).toBe(true);
}, 120_000);
