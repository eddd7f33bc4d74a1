/**
 * `node examples/orders/dist/main.js`: the orders story on the PostgreSQL named by DATABASE_URL,
 * or on an embedded one (no installed server needed).
 */
import { EmbeddedPostgresServer } from '@annals/storage-pg';
import { runOrdersDemo } from './demo.js';

async function main(): Promise<void> {
  let connectionString = process.env.DATABASE_URL;
  let server: EmbeddedPostgresServer | undefined;
  if (!connectionString) {
    console.log('No DATABASE_URL: starting an embedded PostgreSQL…');
    server = new EmbeddedPostgresServer({ persistent: false });
    connectionString = (await server.start()).connectionString;
  }
  try {
    const outcome = await runOrdersDemo({ connectionString });
    const wrong = outcome.totals.filter(([id, t]) => JSON.stringify(t) !== JSON.stringify(outcome.expected.get(id)));
    console.log(
      `\nDone: ${outcome.ordersPlaced} orders, ${outcome.charges} charges by ${outcome.membersThatCharged} members, ` +
        `${outcome.notificationsSent} notifications; order-totals v2 matches the orders placed: ${wrong.length === 0 ? 'yes' : `NO (${wrong.length} customers differ)`}.`,
    );
    if (wrong.length > 0) process.exitCode = 1;
  } finally {
    await server?.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
