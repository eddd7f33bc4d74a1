#!/usr/bin/env node
// The schema gate as a tiny command, until the `annals` CLI ships it (`annals schema check|snapshot|push`):
//
//   annals-gate check    [--config <file>] [--registry]   compare contracts with the snapshot (and the registry)
//   annals-gate snapshot [--config <file>]                write the snapshot of the contracts
//   annals-gate push     [--config <file>]                register every version (needs DATABASE_URL)
//
// Exit codes: 0 ok, 1 breaking changes or conflicts, 2 usage or loading error.
import { checkContracts, loadContracts, parseContractSnapshot, pushContracts, snapshotContracts } from '@annals/core';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const [command, ...args] = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

async function storage() {
  const connectionString = process.env.DATABASE_URL;
  if (!connectionString) throw Object.assign(new Error('Set DATABASE_URL to the database whose registry to use.'), { usage: true });
  const { postgres } = await import('@annals/storage-pg');
  return postgres({ connectionString });
}

async function main() {
  if (!['check', 'snapshot', 'push'].includes(command)) {
    console.error('usage: annals-gate check|snapshot|push [--config <file>] [--registry]');
    return 2;
  }
  const { config, contracts } = await loadContracts({ configFile: option('--config') });
  if (command === 'snapshot') {
    const snapshot = snapshotContracts(contracts, { defaultCompatibility: config.compatibility });
    writeFileSync(config.snapshot, `${JSON.stringify(snapshot, null, 2)}\n`);
    console.log(`wrote ${config.snapshot} (${Object.keys(snapshot.events).length} event types)`);
    return 0;
  }
  if (command === 'push') {
    const store = await storage();
    try {
      const result = await pushContracts({ storage: store, contracts, registeredBy: 'annals-gate' });
      process.stdout.write(result.report);
      return result.ok ? 0 : 1;
    } finally {
      await store.disconnect();
    }
  }
  if (!existsSync(config.snapshot)) {
    console.error(`No snapshot at ${config.snapshot}: run "annals-gate snapshot" and commit it.`);
    return 2;
  }
  const snapshot = parseContractSnapshot(JSON.parse(readFileSync(config.snapshot, 'utf8')), config.snapshot);
  let registry;
  if (flag('--registry')) {
    const store = await storage();
    try {
      await store.connect();
      registry = await store.schemaRegistry.list();
    } finally {
      await store.disconnect();
    }
  }
  const result = checkContracts({ contracts, snapshot, registry, defaultCompatibility: config.compatibility });
  process.stdout.write(result.report);
  return result.ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(`annals-gate: ${error?.message ?? error}`);
    process.exitCode = 2;
  },
);
