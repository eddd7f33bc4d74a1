/** `annals groups list|describe|reset-offsets|delete` (Kafka's `kafka-consumer-groups.sh`). */
import { GroupIdNotFoundError, GroupNotEmptyError, UnknownTopicOrPartitionError, type GroupLag } from '@annals/core';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { CliUsageError } from '../exit-codes.js';
import { collect, parseDatetime, parseDuration, parseOffset, parseTopicPartitions } from '../internal/parse.js';
import { renderTable } from '../internal/table.js';
import type { CommandGroup } from '../program.js';

/** A live member of a group, as `groups describe --json` prints it. */
export interface MemberReport {
  readonly memberId: string;
  readonly clientId: string;
  readonly clientHost: string;
  readonly topics: readonly string[];
  readonly assignment: ReadonlyArray<{ topic: string; partition: number }>;
  /** Milliseconds since the epoch. */
  readonly lastHeartbeat: number;
}

/** A group, as `groups describe --json` prints it. */
export interface GroupReport {
  readonly groupId: string;
  readonly state: string;
  readonly members: readonly MemberReport[];
  readonly partitions: readonly GroupLag[];
}

async function requireGroups(ctx: CliContext, groupIds: readonly string[]): Promise<void> {
  const { groups } = await ctx.client().admin().listGroups();
  const known = new Set(groups.map((g) => g.groupId));
  const missing = groupIds.find((g) => !known.has(g));
  if (missing !== undefined) {
    throw new GroupIdNotFoundError(`Consumer group "${missing}" does not exist (no committed offsets, no members). See \`annals groups list\`.`, { groupId: missing });
  }
}

async function describeGroup(ctx: CliContext, groupId: string): Promise<GroupReport> {
  const admin = ctx.client().admin();
  const { groups } = await admin.describeGroups([groupId]);
  const g = groups[0]!;
  const partitions = await admin.describeGroupLag(groupId);
  return {
    groupId,
    state: g.state,
    members: g.members.map((m) => ({
      memberId: m.memberId,
      clientId: m.clientId,
      clientHost: m.clientHost,
      topics: m.topics,
      assignment: m.assignment.map((a) => ({ topic: a.topic, partition: a.partition })),
      lastHeartbeat: m.lastHeartbeat,
    })),
    partitions,
  };
}

/** Where `reset-offsets` moves a group (exactly one is given). */
type ResetSpec =
  | { readonly kind: 'earliest' }
  | { readonly kind: 'latest' }
  | { readonly kind: 'offset'; readonly offset: bigint }
  | { readonly kind: 'timestamp'; readonly timestamp: number }
  | { readonly kind: 'shift'; readonly by: bigint };

interface ResetOptions {
  readonly topic?: string[];
  readonly allTopics?: boolean;
  readonly toEarliest?: boolean;
  readonly toLatest?: boolean;
  readonly toOffset?: string;
  readonly toDatetime?: string;
  readonly shiftBy?: string;
  readonly byDuration?: string;
  readonly execute?: boolean;
  readonly dryRun?: boolean;
}

/** One partition of a reset plan. */
export interface PlannedOffset {
  readonly topic: string;
  readonly partition: number;
  /** The committed offset now; null when the group has none for the partition. */
  readonly currentOffset: string | null;
  readonly newOffset: string;
}

function resetSpecOf(o: ResetOptions, now: number): ResetSpec {
  const given: ResetSpec[] = [];
  if (o.toEarliest) given.push({ kind: 'earliest' });
  if (o.toLatest) given.push({ kind: 'latest' });
  if (o.toOffset !== undefined) {
    const offset = parseOffset(o.toOffset, '--to-offset');
    if (offset < 0n) throw new CliUsageError('--to-offset must be ≥ 0.');
    given.push({ kind: 'offset', offset });
  }
  if (o.toDatetime !== undefined) given.push({ kind: 'timestamp', timestamp: parseDatetime(o.toDatetime, '--to-datetime') });
  if (o.byDuration !== undefined) given.push({ kind: 'timestamp', timestamp: now - parseDuration(o.byDuration, '--by-duration') });
  if (o.shiftBy !== undefined) given.push({ kind: 'shift', by: parseOffset(o.shiftBy, '--shift-by') });
  if (given.length !== 1) {
    throw new CliUsageError('reset-offsets needs exactly one of --to-earliest, --to-latest, --to-offset <n>, --to-datetime <iso>, --shift-by <n>, --by-duration <PnDTnHnMnS>.');
  }
  return given[0]!;
}

/** Computes where each partition would move, without changing anything. */
async function planReset(ctx: CliContext, groupId: string, options: ResetOptions, spec: ResetSpec): Promise<PlannedOffset[]> {
  const admin = ctx.client().admin();
  let targets: Array<{ topic: string; partitions: number[] | undefined }>;
  if (options.allTopics) {
    if (options.topic?.length) throw new CliUsageError('Give either --topic or --all-topics, not both.');
    const committed = await admin.fetchOffsets({ groupId });
    if (committed.length === 0) throw new CliUsageError(`Group "${groupId}" has no committed offsets, so --all-topics names no topic: use --topic <topic>.`);
    targets = committed.map((t) => ({ topic: t.topic, partitions: undefined }));
  } else {
    if (!options.topic?.length) throw new CliUsageError('reset-offsets needs --topic <topic[:partitions]> (repeatable) or --all-topics.');
    targets = options.topic.map(parseTopicPartitions);
  }
  const plan: PlannedOffset[] = [];
  for (const { topic, partitions } of targets) {
    const marks = await admin.fetchTopicOffsets(topic);
    for (const p of partitions ?? []) {
      if (!marks.some((m) => m.partition === p)) throw new UnknownTopicOrPartitionError(`Topic "${topic}" has no partition ${p} (it has ${marks.length}).`, { topic, partition: p });
    }
    const [current] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const byTime = spec.kind === 'timestamp' ? await admin.fetchTopicOffsetsByTimestamp(topic, spec.timestamp) : [];
    for (const m of marks) {
      if (partitions && !partitions.includes(m.partition)) continue;
      const low = BigInt(m.low);
      const high = BigInt(m.high);
      const committed = current?.partitions.find((c) => c.partition === m.partition)?.offset ?? '-1';
      const from = committed === '-1' ? null : BigInt(committed);
      let target: bigint;
      switch (spec.kind) {
        case 'earliest':
          target = low;
          break;
        case 'latest':
          target = high;
          break;
        case 'offset':
          target = spec.offset;
          break;
        case 'timestamp':
          target = BigInt(byTime.find((b) => b.partition === m.partition)?.offset ?? m.high);
          break;
        case 'shift':
          target = (from ?? low) + spec.by;
          break;
      }
      // As Kafka does: a target outside the log moves to its nearest end.
      if (target < low) target = low;
      if (target > high) target = high;
      plan.push({ topic, partition: m.partition, currentOffset: from === null ? null : from.toString(), newOffset: target.toString() });
    }
  }
  return plan;
}

/** Registers `annals groups list|describe|reset-offsets|delete`. */
export const groupsCommands: CommandGroup = (program, kit) => {
  const groups: Command = program.command('groups').description('list, describe, reset offsets of, and delete consumer groups');

  groups
    .command('list')
    .description('consumer groups with their state and member count')
    .action(
      kit.action(async (ctx) => {
        const admin = ctx.client().admin();
        const ids = (await admin.listGroups()).groups.map((g) => g.groupId).sort();
        const described = ids.length === 0 ? [] : (await admin.describeGroups(ids)).groups;
        const rows = described.map((g) => ({ groupId: g.groupId, state: g.state, members: g.members.length }));
        ctx.print(rows, () => (rows.length === 0 ? 'No consumer groups.\n' : renderTable(['GROUP', 'STATE', 'MEMBERS'], rows.map((r) => [r.groupId, r.state, r.members]))));
      }),
    );

  groups
    .command('describe')
    .description('per partition: committed offset, log end offset, lag (records and seconds), owner; and the live members')
    .argument('<group>', 'consumer group id')
    .action(
      kit.action(async (ctx, _options, [groupArg]) => {
        const groupId = groupArg as string;
        await requireGroups(ctx, [groupId]);
        const report = await describeGroup(ctx, groupId);
        ctx.print(report, () => {
          const head = `Group: ${groupId}\tState: ${report.state}\tMembers: ${report.members.length}\n\n`;
          const table = renderTable(
            ['TOPIC', 'PARTITION', 'CURRENT-OFFSET', 'LOG-END-OFFSET', 'LAG', 'LAG-SECONDS', 'CONSUMER-ID'],
            report.partitions.map((p) => [p.topic, p.partition, p.currentOffset, p.logEndOffset, p.lag, p.lagSeconds.toFixed(1), p.consumerId]),
          );
          const members =
            report.members.length === 0
              ? '\nNo live members.\n'
              : '\n' +
                renderTable(
                  ['MEMBER-ID', 'CLIENT-ID', 'HOST', 'PARTITIONS', 'LAST-HEARTBEAT'],
                  report.members.map((m) => [
                    m.memberId,
                    m.clientId,
                    m.clientHost,
                    m.assignment.map((a) => `${a.topic}:${a.partition}`).join(',') || '-',
                    new Date(m.lastHeartbeat).toISOString(),
                  ]),
                );
          return head + table + members;
        });
      }),
    );

  groups
    .command('reset-offsets')
    .description("move an inactive group's committed offsets; a dry run that prints the plan unless --execute")
    .argument('<group>', 'consumer group id')
    .option('--topic <topic[:p,p]>', 'a topic, optionally with partitions (repeatable)', collect)
    .option('--all-topics', 'every topic the group has committed offsets for')
    .option('--to-earliest', 'to the log start offset')
    .option('--to-latest', 'to the log end offset')
    .option('--to-offset <n>', 'to offset n (clamped to the log)')
    .option('--to-datetime <iso>', 'to the first record at or after a time, e.g. 2026-11-26T10:00:00Z')
    .option('--shift-by <n>', 'by n records from the committed offset (negative goes back)')
    .option('--by-duration <PnDTnHnMnS>', 'to the first record at or after now minus a duration, e.g. PT1H')
    .option('--dry-run', 'print the plan only (the default)')
    .option('--execute', 'commit the new offsets')
    .action(
      kit.action<ResetOptions>(async (ctx, options, [groupArg]) => {
        const groupId = groupArg as string;
        if (options.execute && options.dryRun) throw new CliUsageError('Give --dry-run or --execute, not both.');
        const spec = resetSpecOf(options, Date.now());
        const admin = ctx.client().admin();
        const { groups: [g] } = await admin.describeGroups([groupId]);
        if (g && g.members.length > 0) {
          throw new GroupNotEmptyError(
            `Group "${groupId}" is active (${g.members.length} live member(s): ${g.members.map((m) => m.memberId).join(', ')}); offsets can only be reset while it has no members.`,
            { groupId },
          );
        }
        const plan = await planReset(ctx, groupId, options, spec);
        if (options.execute) {
          for (const topic of [...new Set(plan.map((p) => p.topic))]) {
            await admin.setOffsets({ groupId, topic, partitions: plan.filter((p) => p.topic === topic).map((p) => ({ partition: p.partition, offset: p.newOffset })) });
          }
        }
        ctx.print({ groupId, executed: options.execute === true, offsets: plan }, () => {
          const table = renderTable(['GROUP', 'TOPIC', 'PARTITION', 'CURRENT-OFFSET', 'NEW-OFFSET'], plan.map((p) => [groupId, p.topic, p.partition, p.currentOffset, p.newOffset]));
          return table + (options.execute ? `\nCommitted ${plan.length} offset(s).\n` : '\nDry run: nothing changed. Add --execute to commit these offsets.\n');
        });
      }),
    );

  groups
    .command('delete')
    .description("delete inactive groups' committed offsets and state")
    .argument('<groups...>', 'consumer group ids')
    .action(
      kit.action(async (ctx, _options, [ids]) => {
        const groupIds = ids as string[];
        await requireGroups(ctx, groupIds);
        await ctx.client().admin().deleteGroups(groupIds);
        ctx.print({ deleted: groupIds }, () => groupIds.map((g) => `Deleted consumer group "${g}".\n`).join(''));
      }),
    );
};
