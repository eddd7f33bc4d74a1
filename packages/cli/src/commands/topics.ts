/** `annals topics create|list|describe|alter|delete` (Kafka's `kafka-topics.sh`). */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { CliUsageError } from '../exit-codes.js';
import { collect, parseConfigAssignments, parseInteger } from '../internal/parse.js';
import { renderTable } from '../internal/table.js';
import type { CommandGroup } from '../program.js';

interface CreateOptions {
  readonly partitions: string;
  readonly addConfig?: string[];
  readonly ifNotExists?: boolean;
}

/** A topic as `topics describe --json` prints it. */
export interface TopicReport {
  readonly name: string;
  readonly partitions: number;
  /** Every config key with its value. */
  readonly configs: Readonly<Record<string, string>>;
  /** The keys whose value differs from the default. */
  readonly overrides: readonly string[];
  readonly offsets: ReadonlyArray<{ partition: number; logStartOffset: string; logEndOffset: string }>;
}

/** Describes topics: partitions, configs and watermarks. */
export async function describeTopics(ctx: CliContext, names: readonly string[]): Promise<TopicReport[]> {
  const admin = ctx.client().admin();
  const wanted = names.length > 0 ? names : await admin.listTopics();
  const metadata = await admin.fetchTopicMetadata({ topics: wanted });
  const configs = await admin.describeConfigs({ resources: wanted.map((name) => ({ type: 'topic' as const, name })) });
  const out: TopicReport[] = [];
  for (const t of metadata.topics) {
    const entries = configs.resources.find((r) => r.resourceName === t.name)?.configEntries ?? [];
    const marks = await admin.fetchTopicOffsets(t.name);
    out.push({
      name: t.name,
      partitions: t.partitions.length,
      configs: Object.fromEntries(entries.map((e) => [e.configName, e.configValue])),
      overrides: entries.filter((e) => !e.isDefault).map((e) => e.configName),
      offsets: marks.map((m) => ({ partition: m.partition, logStartOffset: m.low, logEndOffset: m.high })),
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Registers `annals topics create|list|describe|alter|delete`. */
export const topicsCommands: CommandGroup = (program, kit) => {
  const topics: Command = program.command('topics').description('create, list, describe, alter and delete topics');

  topics
    .command('create')
    .description('create a topic')
    .argument('<topic>', 'topic name: [a-zA-Z0-9._-], at most 249 characters')
    .option('-p, --partitions <n>', 'number of partitions', '1')
    .option('--add-config <k=v>', 'topic configs: k1=v1,k2=v2 (repeatable), e.g. retention.ms=604800000; [a,b] for a value with commas', collect)
    .option('--if-not-exists', 'succeed without change when the topic exists')
    .action(
      kit.action<CreateOptions>(async (ctx, options, [topic]) => {
        const name = topic as string;
        const partitions = parseInteger(options.partitions, '--partitions', 1);
        const configEntries = parseConfigAssignments(options.addConfig ?? [], '--add-config');
        const created = await ctx
          .client()
          .admin()
          .createTopics({ topics: [{ topic: name, numPartitions: partitions, configEntries }], ignoreExisting: options.ifNotExists === true });
        if (created) {
          ctx.print({ topic: name, created, partitions, configs: Object.fromEntries(configEntries.map((e) => [e.name, e.value])) }, () => `Created topic "${name}" with ${partitions} partition(s).\n`);
          return;
        }
        // Left alone: report the topic as it is (not the request), non-default configs as `topics describe` shows them.
        const [existing] = await describeTopics(ctx, [name]);
        const configs = Object.fromEntries(existing!.overrides.map((k) => [k, existing!.configs[k]]));
        ctx.print({ topic: name, created, partitions: existing!.partitions, configs }, () => `Topic "${name}" already exists (${existing!.partitions} partition(s)); nothing changed.\n`);
      }),
    );

  topics
    .command('list')
    .description('list topics and their partition counts')
    .action(
      kit.action(async (ctx) => {
        const { topics: list } = await ctx.client().admin().fetchTopicMetadata();
        const rows = list.map((t) => ({ name: t.name, partitions: t.partitions.length })).sort((a, b) => a.name.localeCompare(b.name));
        ctx.print(rows, () => (rows.length === 0 ? 'No topics. Create one with `annals topics create <topic>`.\n' : renderTable(['TOPIC', 'PARTITIONS'], rows.map((r) => [r.name, r.partitions]))));
      }),
    );

  topics
    .command('describe')
    .description('partitions, configs (non-default ones) and watermarks of topics (all topics when none is named)')
    .argument('[topics...]', 'topic names')
    .action(
      kit.action(async (ctx, _options, [names]) => {
        const reports = await describeTopics(ctx, (names as string[] | undefined) ?? []);
        ctx.print(reports, () =>
          reports.length === 0
            ? 'No topics. Create one with `annals topics create <topic>`.\n'
            : reports
            .map((r) => {
              const configs = r.overrides.map((k) => `${k}=${r.configs[k]}`).join(',');
              const head = `Topic: ${r.name}\tPartitionCount: ${r.partitions}\tConfigs: ${configs || '(defaults)'}\n`;
              const table = renderTable(
                ['PARTITION', 'LOG-START-OFFSET', 'LOG-END-OFFSET', 'RECORDS'],
                r.offsets.map((o) => [o.partition, o.logStartOffset, o.logEndOffset, (BigInt(o.logEndOffset) - BigInt(o.logStartOffset)).toString()]),
              );
              return head + table;
            })
            .join('\n'),
        );
      }),
    );

  topics
    .command('alter')
    .description('raise the partition count of a topic (configs: `annals configs alter`)')
    .argument('<topic>', 'topic name')
    .requiredOption('-p, --partitions <n>', 'the new partition count (never lower: keys would move)')
    .action(
      kit.action<{ partitions: string }>(async (ctx, options, [topic]) => {
        const name = topic as string;
        const count = parseInteger(options.partitions, '--partitions', 1);
        const admin = ctx.client().admin();
        const [current] = (await admin.fetchTopicMetadata({ topics: [name] })).topics;
        if (current && current.partitions.length === count) {
          ctx.print({ topic: name, partitions: count, changed: false }, () => `Topic "${name}" already has ${count} partition(s); nothing changed.\n`);
          return;
        }
        await admin.createPartitions({ topicPartitions: [{ topic: name, count }] });
        ctx.print({ topic: name, partitions: count, changed: true }, () => `Topic "${name}" now has ${count} partition(s) (was ${current?.partitions.length ?? '?'}).\n`);
      }),
    );

  topics
    .command('delete')
    .description('delete topics and all their records (irreversible)')
    .argument('<topics...>', 'topic names')
    .option('--if-exists', 'skip topics that do not exist instead of failing')
    .action(
      kit.action<{ ifExists?: boolean }>(async (ctx, options, [names]) => {
        const admin = ctx.client().admin();
        let wanted = names as string[];
        if (new Set(wanted).size !== wanted.length) throw new CliUsageError('A topic is named twice.');
        let skipped: string[] = [];
        if (options.ifExists) {
          const existing = new Set(await admin.listTopics());
          skipped = wanted.filter((t) => !existing.has(t));
          wanted = wanted.filter((t) => existing.has(t));
        }
        if (wanted.length > 0) await admin.deleteTopics({ topics: wanted });
        ctx.print({ deleted: wanted, skipped }, () => [...wanted.map((t) => `Deleted topic "${t}".\n`), ...skipped.map((t) => `Topic "${t}" does not exist; skipped.\n`)].join(''));
      }),
    );
};
