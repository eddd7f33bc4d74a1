import { CommitOutcomeUnknownError, ConnectionError, StorageError } from '@annals/core';
import { describe, expect, it } from 'vitest';
import { translateCommitError, translatePgError } from './pg-errors.js';

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('translatePgError', () => {
  it('regression (issue 9): "too many clients" (53300) is a retriable connection failure, so a consumer rejoins instead of stopping', () => {
    const error = translatePgError(pgError('53300', 'sorry, too many clients already'));
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).retriable).toBe(true);
  });

  it('regression (issue 9): a pool with no free client in time is a retriable ConnectionError, not a plain Error', () => {
    // pg-pool throws a plain Error when connectionTimeoutMillis passes while every client is busy;
    // it reached the application untyped (seen under the chaos suite's one-partition contention).
    const error = translatePgError(new Error('timeout exceeded when trying to connect'));
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).retriable).toBe(true);
  });

  it('keeps other server errors non-retriable, and a lost COMMIT unknown', () => {
    expect(translatePgError(Object.assign(new (class DatabaseError extends Error {})('x'), { code: '23505' }))).not.toBeInstanceOf(ConnectionError);
    expect(translateCommitError(pgError('ECONNRESET', 'read ECONNRESET'))).toBeInstanceOf(CommitOutcomeUnknownError);
    expect(StorageError).toBeDefined();
  });

  it('a write pg refused to send (its client had already failed or closed) is a plain retriable ConnectionError, not an unknown outcome', () => {
    for (const message of ['Client has encountered a connection error and is not queryable', 'Client was closed and is not queryable']) {
      const error = translateCommitError(new Error(message));
      expect(error).toBeInstanceOf(ConnectionError);
      expect(error).not.toBeInstanceOf(CommitOutcomeUnknownError);
      expect((error as ConnectionError).retriable).toBe(true);
    }
  });

  it("a dedicated client's connect that timed out (pg's bare 'timeout expired') is a retriable ConnectionError", () => {
    const error = translatePgError(new Error('timeout expired'));
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).retriable).toBe(true);
  });
});
