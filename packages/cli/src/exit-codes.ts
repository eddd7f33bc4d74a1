/**
 * The exit codes of `annals`. Scripts may rely on them: they are part of the CLI's contract and
 * only ever gain new values.
 */
import { AnnalsError } from '@annals/core';

/** Exit codes, by meaning. */
export const ExitCode = Object.freeze({
  /** The command did what was asked. */
  OK: 0,
  /** Any failure not listed below (a database error, a failed rebuild, …). */
  ERROR: 1,
  /** The command line is wrong: unknown command or option, missing argument, invalid value or config key. */
  USAGE: 2,
  /** Refused: the consumer group has live members (reset-offsets, delete). Stop its consumers and retry. */
  GROUP_ACTIVE: 3,
  /** A topic, partition, group or projection that does not exist. */
  NOT_FOUND: 4,
  /** A topic that already exists (`topics create` without `--if-not-exists`). */
  ALREADY_EXISTS: 5,
  /** PostgreSQL could not be reached. Worth retrying later. */
  UNAVAILABLE: 6,
  /** `cleaner run`: another process holds the cleaner lease (it is cleaning this database); nothing was done. */
  LEASE_HELD: 7,
  /** `schema check` found a breaking contract change, or `schema push` a version registered with another schema. */
  CONTRACT_BREAKING: 8,
  /** Stopped by SIGINT / SIGTERM (128 + SIGINT, as shells report it). */
  INTERRUPTED: 130,
});

/** One of the values of {@link ExitCode}. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * A mistake on the command line found by the CLI itself (a bad `--to-offset`, a `-H` without `=`).
 * Exits with {@link ExitCode.USAGE}.
 */
export class CliUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliUsageError';
  }
}

/**
 * Something the user named does not exist (a group never seen, a projection unknown to the store).
 * Exits with {@link ExitCode.NOT_FOUND}.
 */
export class CliNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliNotFoundError';
  }
}

const BY_CODE: Readonly<Record<string, ExitCodeValue>> = Object.freeze({
  NON_EMPTY_GROUP: ExitCode.GROUP_ACTIVE,
  UNKNOWN_TOPIC_OR_PARTITION: ExitCode.NOT_FOUND,
  GROUP_ID_NOT_FOUND: ExitCode.NOT_FOUND,
  TOPIC_ALREADY_EXISTS: ExitCode.ALREADY_EXISTS,
  CONTRACT_LOAD_FAILED: ExitCode.USAGE,
  CONNECTION_ERROR: ExitCode.UNAVAILABLE,
  INVALID_CONFIG: ExitCode.USAGE,
  INVALID_OPTIONS: ExitCode.USAGE,
  INVALID_TOPIC_EXCEPTION: ExitCode.USAGE,
  INVALID_PARTITIONS: ExitCode.USAGE,
});

/** The exit code an error maps to (Annals errors by their `code`, never by their message). */
export function exitCodeOf(error: unknown): ExitCodeValue {
  if (error instanceof CliUsageError) return ExitCode.USAGE;
  if (error instanceof CliNotFoundError) return ExitCode.NOT_FOUND;
  if (error instanceof AnnalsError) return BY_CODE[error.code] ?? ExitCode.ERROR;
  return ExitCode.ERROR;
}
