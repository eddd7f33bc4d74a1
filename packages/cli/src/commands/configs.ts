/** `annals configs describe|alter` (Kafka's `kafka-configs.sh --entity-type topics`). */
import { describeTopicConfigKeys, resolveTopicConfig, type ConfigEntry } from '@annals/core';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { CliUsageError } from '../exit-codes.js';
import { collect, parseConfigAssignments, parseConfigNames } from '../internal/parse.js';
import { renderTable } from '../internal/table.js';
import type { CommandGroup } from '../program.js';

/** One config key of a topic, as `configs describe --json` prints it. */
export interface ConfigReport {
  readonly name: string;
  readonly value: string;
  readonly default: string;
  /** 'default' when the value is the default, else 'topic' (set on the topic). */
  readonly source: 'default' | 'topic';
  readonly doc: string;
}

async function describeConfigs(ctx: CliContext, topic: string): Promise<ConfigReport[]> {
  const docs = new Map(describeTopicConfigKeys().map((k) => [k.name as string, k]));
  const response = await ctx.client().admin().describeConfigs({ resources: [{ type: 'topic', name: topic }] });
  return (response.resources[0]?.configEntries ?? []).map((e) => ({
    name: e.configName,
    value: e.configValue,
    default: docs.get(e.configName)?.default ?? '',
    source: e.isDefault ? ('default' as const) : ('topic' as const),
    doc: docs.get(e.configName)?.doc ?? '',
  }));
}

/** Registers `annals configs describe|alter`. */
export const configsCommands: CommandGroup = (program, kit) => {
  const configs: Command = program.command('configs').description("describe and alter topic configs with Kafka's keys");

  configs
    .command('describe')
    .description('the config of a topic: every key, its value, default and source')
    .argument('<topic>', 'topic name')
    .action(
      kit.action(async (ctx, _options, [topic]) => {
        const rows = await describeConfigs(ctx, topic as string);
        ctx.print({ topic, configs: rows }, () =>
          `Configs for topic "${topic as string}":\n` + renderTable(['KEY', 'VALUE', 'DEFAULT', 'SOURCE'], rows.map((r) => [r.name, r.value, r.default, r.source])),
        );
      }),
    );

  configs
    .command('alter')
    .description('set (--add-config) or restore to default (--delete-config) topic config keys')
    .argument('<topic>', 'topic name')
    .option('--add-config <k=v>', 'keys to set: k1=v1,k2=v2 (repeatable); use [a,b] for a value with commas', collect)
    .option('--delete-config <k>', 'keys to restore to their defaults: k1,k2 (repeatable)', collect)
    .option('--dry-run', 'validate and print the result without changing anything')
    .addHelpText('after', () => `\nKeys:\n${describeTopicConfigKeys().map((k) => `  ${k.name} (default ${k.default}): ${k.doc}`).join('\n')}\n`)
    .action(
      kit.action<{ addConfig?: string[]; deleteConfig?: string[]; dryRun?: boolean }>(async (ctx, options, [topicArg]) => {
        const topic = topicArg as string;
        const set = parseConfigAssignments(options.addConfig ?? [], '--add-config');
        const reset = parseConfigNames(options.deleteConfig ?? []);
        if (set.length === 0 && reset.length === 0) throw new CliUsageError('configs alter needs --add-config k=v and/or --delete-config k.');
        const both = set.find((e) => reset.includes(e.name));
        if (both) throw new CliUsageError(`"${both.name}" is both added and deleted.`);
        const entries: ConfigEntry[] = [...set, ...reset.map((name) => ({ name, value: null }))];
        // Validate every key and value before anything is written (also checks the topic exists).
        resolveTopicConfig(entries, undefined, topic);
        const admin = ctx.client().admin();
        await admin.alterConfigs({ resources: [{ type: 'topic', name: topic, configEntries: entries }], validateOnly: options.dryRun === true });
        const rows = await describeConfigs(ctx, topic);
        const changed = new Set(entries.map((e) => e.name));
        ctx.print({ topic, dryRun: options.dryRun === true, changed: [...changed], configs: rows }, () => {
          const verb = options.dryRun ? 'Would update' : 'Updated';
          const lines = entries.map((e) => `  ${e.name} = ${e.value ?? `(default: ${rows.find((r) => r.name === e.name)?.default ?? '?'})`}`);
          return `${verb} config for topic "${topic}":\n${lines.join('\n')}\n`;
        });
      }),
    );
};
