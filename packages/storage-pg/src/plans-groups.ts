/**
 * SQL plans of consumer groups.
 *
 * ## One owner (invariant 3)
 * A member owns a partition while its session holds the partition's advisory lock
 * (`hashtextextended('<schema>/<group>/<topic>/<partition>', 0)`), which Postgres releases the
 * moment the session ends. On taking the lock, the member bumps the partition's generation in
 * `partition_owners`. Every offset commit locks the owner row `FOR SHARE` and requires the
 * committing member's generation: a former owner's commit — a zombie whose session was
 * terminated, or a member that was expired — finds a newer generation and fails, and its
 * transaction (with the handler's writes) rolls back. A claim waits for a commit that already
 * holds the share lock, then reads the committed offset, so nothing is processed twice.
 */
import type { LiveMember } from '@annals/core';
import type { Statement, Tables } from './plans.js';

export function lockKeyText(t: Tables, groupId: string, topic: string, partition: number): string {
  return `${t.schema}/${groupId}/${topic}/${partition}`;
}

export function joinStatement(
  t: Tables,
  groupId: string,
  memberId: string,
  m: { clientId: string; clientHost: string; topics: readonly string[]; sessionTimeoutMs: number; applicationName: string },
): Statement {
  return {
    text: `INSERT INTO ${t.groupMembers} (group_id, member_id, client_id, client_host, topics, session_timeout_ms, backend_pid, application_name)
VALUES ($1, $2, $3, $4, $5, $6, pg_backend_pid(), $7)
ON CONFLICT (group_id, member_id) DO UPDATE SET heartbeat_at = now(), backend_pid = pg_backend_pid()
RETURNING pg_notify($8, '#g/' || $1) IS NULL AS notified`,
    values: [groupId, memberId, m.clientId, m.clientHost, [...m.topics], m.sessionTimeoutMs, m.applicationName, t.channel],
  };
}

/** Renews the heartbeat; returns 1 row when the member is still registered. */
export function heartbeatStatement(t: Tables, groupId: string, memberId: string): Statement {
  return {
    text: `UPDATE ${t.groupMembers} SET heartbeat_at = now() WHERE group_id = $1 AND member_id = $2`,
    values: [groupId, memberId],
  };
}

/**
 * Expires members whose session is gone (their backend no longer exists: killed process, cut
 * connection) or that were silent past their session timeout (a hung process): deletes them, frees
 * their partitions (owner = NULL), ends a silent member's session so its locks free, and tells the
 * group. A backend is only terminated when both its pid and its application name match, and the
 * CASE makes sure nothing else is even considered.
 */
export function expireStatement(t: Tables, groupId: string): Statement {
  return {
    text: `WITH expired AS (
  DELETE FROM ${t.groupMembers} m
  WHERE m.group_id = $1 AND (
    m.heartbeat_at < now() - m.session_timeout_ms * interval '1 millisecond'
    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = m.backend_pid))
  RETURNING m.member_id, m.backend_pid, m.application_name
), freed AS (
  UPDATE ${t.partitionOwners} o SET member_id = NULL FROM expired e
  WHERE o.group_id = $1 AND o.member_id = e.member_id
  RETURNING o.topic
)
SELECT e.member_id,
  (SELECT coalesce(bool_or(CASE WHEN a.application_name = e.application_name THEN pg_terminate_backend(a.pid) ELSE false END), false)
     FROM pg_stat_activity a WHERE a.pid = e.backend_pid) AS terminated,
  pg_notify($2, '#g/' || $1) IS NULL AS notified
FROM expired e`,
    values: [groupId, t.channel],
  };
}

/** A row of {@link liveMembersStatement}. */
export interface LiveMemberRow {
  member_id: string;
  client_id: string;
  client_host: string;
  topics: string[];
  joined_at: number;
  heartbeat_at: number;
  owned: Array<{ topic: string; partition: number }>;
}

/** A {@link LiveMemberRow} as the storage port's `LiveMember`. */
export function toLiveMember(r: LiveMemberRow): LiveMember {
  return {
    memberId: r.member_id,
    clientId: r.client_id,
    clientHost: r.client_host,
    topics: r.topics,
    joinedAt: Math.floor(r.joined_at),
    heartbeatAt: Math.floor(r.heartbeat_at),
    owned: r.owned,
  };
}

export function liveMembersStatement(t: Tables, groupId: string): Statement {
  return {
    text: `SELECT m.member_id, m.client_id, m.client_host, m.topics,
  (extract(epoch FROM m.joined_at) * 1000)::float8 AS joined_at, (extract(epoch FROM m.heartbeat_at) * 1000)::float8 AS heartbeat_at,
  coalesce((SELECT json_agg(json_build_object('topic', o.topic, 'partition', o.partition) ORDER BY o.topic, o.partition)
    FROM ${t.partitionOwners} o WHERE o.group_id = m.group_id AND o.member_id = m.member_id), '[]'::json) AS owned
FROM ${t.groupMembers} m WHERE m.group_id = $1 ORDER BY m.member_id`,
    values: [groupId],
  };
}

export function tryLockStatement(t: Tables, groupId: string, topic: string, partition: number): Statement {
  return { text: `SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS acquired`, values: [lockKeyText(t, groupId, topic, partition)] };
}

export function unlockStatement(t: Tables, groupId: string, topic: string, partition: number): Statement {
  return { text: `SELECT pg_advisory_unlock(hashtextextended($1, 0)) AS released`, values: [lockKeyText(t, groupId, topic, partition)] };
}

/** Takes ownership: bumps the generation (waiting for an in-flight fenced commit to finish). */
export function claimStatement(t: Tables, groupId: string, topic: string, partition: number, memberId: string): Statement {
  return {
    text: `INSERT INTO ${t.partitionOwners} (group_id, topic, partition, member_id, generation) VALUES ($1, $2, $3, $4, 1)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET member_id = EXCLUDED.member_id, generation = ${t.partitionOwners}.generation + 1, claimed_at = now()
RETURNING generation::text AS generation`,
    values: [groupId, topic, partition, memberId],
  };
}

export function committedOffsetStatement(t: Tables, groupId: string, topic: string, partition: number): Statement {
  return {
    text: `SELECT committed_offset::text AS committed_offset FROM ${t.groupOffsets} WHERE group_id = $1 AND topic = $2 AND partition = $3`,
    values: [groupId, topic, partition],
  };
}

export function releaseStatement(t: Tables, groupId: string, topic: string, partition: number, memberId: string): Statement {
  return {
    text: `UPDATE ${t.partitionOwners} SET member_id = NULL WHERE group_id = $1 AND topic = $2 AND partition = $3 AND member_id = $4`,
    values: [groupId, topic, partition, memberId],
  };
}

export function leaveStatements(t: Tables, groupId: string, memberId: string): Statement[] {
  return [
    { text: `UPDATE ${t.partitionOwners} SET member_id = NULL WHERE group_id = $1 AND member_id = $2`, values: [groupId, memberId] },
    {
      text: `DELETE FROM ${t.groupMembers} WHERE group_id = $1 AND member_id = $2 RETURNING pg_notify($3, '#g/' || $1) IS NULL AS notified`,
      values: [groupId, memberId, t.channel],
    },
  ];
}

/**
 * Commits offsets in one statement, all or none. With a fence, each row joins the owner row
 * locked FOR SHARE at the member's generation; a row without it gets a NULL offset, which the
 * NOT NULL constraint turns into an error that aborts the whole statement.
 */
export function commitOffsetsStatement(
  t: Tables,
  groupId: string,
  commits: ReadonlyArray<{ topic: string; partition: number; offset: bigint; metadata: string | null; generation: bigint | null }>,
  memberId: string | null,
): Statement {
  const values: unknown[] = [
    groupId,
    commits.map((c) => c.topic),
    commits.map((c) => c.partition),
    commits.map((c) => c.offset.toString()),
    commits.map((c) => c.metadata),
  ];
  if (memberId === null) {
    return {
      text: `INSERT INTO ${t.groupOffsets} (group_id, topic, partition, committed_offset, metadata)
SELECT $1, c.topic, c.partition, c.committed_offset, c.metadata FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS c(topic, partition, committed_offset, metadata)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET committed_offset = EXCLUDED.committed_offset, metadata = EXCLUDED.metadata, committed_at = now()`,
      values,
    };
  }
  values.push(commits.map((c) => (c.generation ?? -1n).toString()), memberId);
  return {
    text: `WITH c AS (
  SELECT * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::bigint[]) AS c(topic, partition, committed_offset, metadata, generation)
), owned AS (
  SELECT o.topic, o.partition, o.generation FROM ${t.partitionOwners} o JOIN c USING (topic, partition)
  WHERE o.group_id = $1 AND o.member_id = $7 AND o.generation = c.generation
  FOR SHARE OF o
)
INSERT INTO ${t.groupOffsets} (group_id, topic, partition, committed_offset, metadata)
SELECT $1, c.topic, c.partition, CASE WHEN owned.topic IS NULL THEN NULL ELSE c.committed_offset END, c.metadata
FROM c LEFT JOIN owned USING (topic, partition)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET committed_offset = EXCLUDED.committed_offset, metadata = EXCLUDED.metadata, committed_at = now()`,
    values,
  };
}

export function fetchCommittedStatement(t: Tables, groupId: string, topics?: readonly string[]): Statement {
  return {
    text: `SELECT topic, partition, committed_offset::text AS committed_offset, metadata, (extract(epoch FROM committed_at) * 1000)::float8 AS committed_at
FROM ${t.groupOffsets} WHERE group_id = $1 AND ($2::text[] IS NULL OR topic = ANY($2::text[])) ORDER BY topic, partition`,
    values: [groupId, topics ? [...topics] : null],
  };
}

export function listGroupsStatement(t: Tables): Statement {
  return {
    text: `SELECT group_id FROM ${t.groupMembers} UNION SELECT group_id FROM ${t.groupOffsets} UNION SELECT group_id FROM ${t.partitionOwners} ORDER BY 1`,
    values: [],
  };
}

/** Per partition the group consumes (or has offsets for): committed, watermarks, owner, first unconsumed timestamp. */
export function describeGroupStatement(t: Tables, groupId: string): Statement {
  return {
    text: `WITH parts AS (
  SELECT p.topic, p.partition, p.log_start_offset, p.next_offset FROM ${t.partitions} p
  WHERE p.topic IN (
    SELECT unnest(topics) FROM ${t.groupMembers} WHERE group_id = $1
    UNION SELECT topic FROM ${t.groupOffsets} WHERE group_id = $1
    UNION SELECT topic FROM ${t.partitionOwners} WHERE group_id = $1)
)
SELECT parts.topic, parts.partition, g.committed_offset::text AS committed_offset,
  parts.log_start_offset::text AS log_start_offset, parts.next_offset::text AS log_end_offset,
  o.member_id, o.generation::text AS generation,
  (SELECT (extract(epoch FROM r."timestamp") * 1000)::float8 FROM ${t.records} r
    WHERE r.topic = parts.topic AND r.partition = parts.partition
      AND r."offset" >= greatest(coalesce(g.committed_offset, parts.log_start_offset), parts.log_start_offset)
    ORDER BY r."offset" LIMIT 1) AS first_unconsumed_ts
FROM parts
LEFT JOIN ${t.groupOffsets} g ON g.group_id = $1 AND g.topic = parts.topic AND g.partition = parts.partition
LEFT JOIN ${t.partitionOwners} o ON o.group_id = $1 AND o.topic = parts.topic AND o.partition = parts.partition
ORDER BY parts.topic, parts.partition`,
    values: [groupId],
  };
}

/**
 * Lag monitoring's read, in one statement (one MVCC snapshot, one `now()`; the caller runs it in
 * a short transaction with JIT off, so four round trips whatever the number of groups):
 * the watermarks of the selected topics, the live-member count of the selected groups, and per
 * group partition what `describeGroupStatement` gives. `$1` / `$2`: group ids / topic names, or
 * NULL for all. Offsets travel as text inside the JSON so bigints keep their precision.
 *
 * The group partitions are those of `describeGroupStatement` (the topics a group subscribes to or
 * has offsets or owners for); the first unconsumed record is one primary-key lookup each.
 */
export function describeLagStatement(t: Tables, groupIds: readonly string[] | null, topics: readonly string[] | null): Statement {
  return {
    text: `WITH sel_groups AS (
  SELECT group_id FROM ${t.groupMembers} WHERE $1::text[] IS NULL OR group_id = ANY($1::text[])
  UNION SELECT group_id FROM ${t.groupOffsets} WHERE $1::text[] IS NULL OR group_id = ANY($1::text[])
  UNION SELECT group_id FROM ${t.partitionOwners} WHERE $1::text[] IS NULL OR group_id = ANY($1::text[])
), parts AS (
  SELECT p.topic, p.partition, p.log_start_offset, p.next_offset FROM ${t.partitions} p
  WHERE $2::text[] IS NULL OR p.topic = ANY($2::text[])
), group_topics AS (
  SELECT m.group_id, unnest(m.topics) AS topic FROM ${t.groupMembers} m JOIN sel_groups USING (group_id)
  UNION SELECT g.group_id, g.topic FROM ${t.groupOffsets} g JOIN sel_groups USING (group_id)
  UNION SELECT o.group_id, o.topic FROM ${t.partitionOwners} o JOIN sel_groups USING (group_id)
), group_parts AS (
  SELECT gt.group_id, parts.topic, parts.partition, parts.log_start_offset, parts.next_offset, g.committed_offset, o.member_id, o.generation
  FROM group_topics gt
  JOIN parts ON parts.topic = gt.topic
  LEFT JOIN ${t.groupOffsets} g ON g.group_id = gt.group_id AND g.topic = parts.topic AND g.partition = parts.partition
  LEFT JOIN ${t.partitionOwners} o ON o.group_id = gt.group_id AND o.topic = parts.topic AND o.partition = parts.partition
)
SELECT (extract(epoch FROM now()) * 1000)::float8 AS now,
  (SELECT coalesce(json_agg(json_build_array(topic, partition, log_start_offset::text, next_offset::text) ORDER BY topic, partition), '[]'::json)
     FROM parts) AS partitions,
  (SELECT coalesce(json_agg(json_build_array(s.group_id,
       (SELECT count(*) FROM ${t.groupMembers} m
          WHERE m.group_id = s.group_id AND m.heartbeat_at >= now() - m.session_timeout_ms * interval '1 millisecond')
     ) ORDER BY s.group_id), '[]'::json)
     FROM sel_groups s) AS groups,
  (SELECT coalesce(json_agg(json_build_array(gp.group_id, gp.topic, gp.partition, gp.committed_offset::text,
       gp.log_start_offset::text, gp.next_offset::text, gp.member_id, gp.generation::text,
       (SELECT (extract(epoch FROM r."timestamp") * 1000)::float8 FROM ${t.records} r
         WHERE r.topic = gp.topic AND r.partition = gp.partition
           AND r."offset" >= greatest(coalesce(gp.committed_offset, gp.log_start_offset), gp.log_start_offset)
         ORDER BY r."offset" LIMIT 1)
     ) ORDER BY gp.group_id, gp.topic, gp.partition), '[]'::json)
     FROM group_parts gp) AS group_partitions`,
    values: [groupIds ? [...groupIds] : null, topics ? [...topics] : null],
  };
}

export function deleteGroupStatements(t: Tables, groupIds: readonly string[]): Statement[] {
  return [
    { text: `SELECT group_id FROM ${t.groupMembers} WHERE group_id = ANY($1::text[]) FOR UPDATE`, values: [groupIds] },
    { text: `DELETE FROM ${t.groupOffsets} WHERE group_id = ANY($1::text[])`, values: [groupIds] },
    { text: `DELETE FROM ${t.partitionOwners} WHERE group_id = ANY($1::text[])`, values: [groupIds] },
  ];
}
