/** Listeners put on a connection for as long as one owner holds it. */
import type { EventEmitter } from 'node:events';

/**
 * Attaches `listeners` to `emitter` and returns the function that takes exactly those off again —
 * for a client of an application's pool, which goes back to the pool without the listeners of the
 * session, lease or LISTEN connection that used it (the checkout guard's stays).
 */
export function attachListeners(emitter: EventEmitter, listeners: Readonly<Record<string, (...args: any[]) => void>>): () => void {
  const entries = Object.entries(listeners);
  for (const [event, listener] of entries) emitter.on(event, listener);
  return () => {
    for (const [event, listener] of entries) emitter.off(event, listener);
  };
}
