/**
 * The one place where PostgreSQL and driver errors become Annals errors.
 *
 * The retry loop of the client trusts `retriable`: connection loss, server shutdown or start-up,
 * deadlocks and serialization failures are retriable; everything else fails at once. A connection
 * lost while a COMMIT (or an autocommitted write) was in flight is *not* retriable: its outcome is
 * unknown, and only an idempotent producer may safely send again.
 */
import {
  AnnalsError,
  CommitOutcomeUnknownError,
  ConcurrentTransactionsError,
  ConnectionError,
  StorageError,
  type ErrorContext,
} from '@annals/core';
import pg from 'pg';

interface PgLikeError {
  code?: string;
  message?: string;
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);

/** True for an error that means the connection is gone (or never came up). */
export function isConnectionFailure(error: unknown): boolean {
  if (error instanceof ConnectionError) return true;
  const e = error as PgLikeError | undefined;
  if (!e || typeof e !== 'object') return false;
  const code = e.code ?? '';
  if (CONNECTION_CODES.has(code)) return true;
  // 08xxx connection exceptions; 57P01 admin shutdown; 57P02 crash shutdown; 57P03 cannot connect now;
  // 53300 too many connections (the server refused a new one: transient, like a refused connection).
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') return true;
  const message = e.message ?? '';
  // pg's own connectionTimeoutMillis on a Client (not a pool) fails its connect with this, bare.
  if (message === 'timeout expired') return true;
  return (
    // 'timeout exceeded when trying to connect': pg-pool found no free client in time (a plain Error).
    /Connection terminated|connection error|Client was closed|not queryable|terminating connection|timeout exceeded when trying to connect|the database system is (starting up|shutting down)/i.test(
      message,
    ) && !code.startsWith('2')
  );
}

/** True for errors raised by the server or the driver (not by application code). */
function fromDatabase(error: unknown): boolean {
  return error instanceof pg.DatabaseError || isConnectionFailure(error);
}

/**
 * Translates an error thrown by `pg` into an {@link AnnalsError}. Annals errors and errors thrown
 * by application code (a transaction callback) pass through unchanged.
 */
export function translatePgError(error: unknown, context: ErrorContext = {}): unknown {
  if (error instanceof AnnalsError || !fromDatabase(error)) return error;
  const e = (error ?? {}) as PgLikeError;
  const code = e.code;
  const message = e.message ?? String(error);
  if (isConnectionFailure(error)) {
    return new ConnectionError(`Lost or could not open the connection to PostgreSQL: ${message}`, { ...context, cause: error });
  }
  if (code === '40P01' || code === '40001' || code === '55P03') {
    return new ConcurrentTransactionsError(`The transaction was rolled back by PostgreSQL (${code}): ${message}`, {
      ...context,
      cause: error,
    });
  }
  return new StorageError(`PostgreSQL error${code ? ` ${code}` : ''}: ${message}`, code, false, { ...context, cause: error });
}

/**
 * pg refuses a query on a client whose connection already failed or was closed, without sending
 * anything: such a statement certainly did not run.
 */
const NEVER_SENT = /^Client (has encountered a connection error|was closed) and is not queryable$/;

/** Translates an error thrown while a COMMIT (or autocommitted write) was in flight. */
export function translateCommitError(error: unknown, context: ErrorContext = {}): unknown {
  if (isConnectionFailure(error) && !NEVER_SENT.test((error as PgLikeError).message ?? '')) {
    return new CommitOutcomeUnknownError(
      'The connection was lost while the commit was in flight: the records may or may not have been written. ' +
        'Use an idempotent producer (producer({ idempotent: true })) to retry safely, or check the log before sending again.',
      { ...context, cause: error },
    );
  }
  return translatePgError(error, context);
}
