import { InvalidTopicError } from '../errors.js';

/** Kafka's limit: 249 characters, so that `<topic>-<partition>` fits a 255-byte file name. */
export const MAX_TOPIC_NAME_LENGTH = 249;
const LEGAL = /^[a-zA-Z0-9._-]+$/;

/**
 * Throws {@link InvalidTopicError} unless `name` follows Kafka's topic-name rules:
 * 1–249 characters from `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
 */
export function validateTopicName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidTopicError('Topic name must be a non-empty string.');
  }
  if (name.length > MAX_TOPIC_NAME_LENGTH) {
    throw new InvalidTopicError(
      `Topic name "${name.slice(0, 40)}…" is ${name.length} characters; the limit is ${MAX_TOPIC_NAME_LENGTH}.`,
      { topic: name },
    );
  }
  if (name === '.' || name === '..') {
    throw new InvalidTopicError(`Topic name cannot be "${name}".`, { topic: name });
  }
  if (!LEGAL.test(name)) {
    throw new InvalidTopicError(
      `Topic name ${JSON.stringify(name)} is not legal: use only ASCII letters, digits, '.', '_' and '-'.`,
      { topic: name },
    );
  }
}
