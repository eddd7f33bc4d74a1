/**
 * Given/when/then specifications for deciders: pure, no store.
 *
 * ```ts
 * const spec = DeciderSpecification.for(Order);
 * await spec.given([{ type: 'order.placed', payload: { orderId: 'o-1', totalCents: 1250 } }])
 *   .when({ type: 'pay', orderId: 'o-1' })
 *   .then([{ type: 'order.paid', payload: { orderId: 'o-1' } }]);
 * ```
 *
 * `given` events are validated by their contracts (as a load would give them, defaults applied)
 * and folded with `evolve` from `initialState()`; `when` runs `decide`; the `then…` step checks
 * the outcome. Decided events are validated too, so a payload the contract refuses fails the
 * specification as the append would. Events are compared by type and validated payload.
 */
import {
  InvalidOptionsError,
  type AnyEventContract,
  type Decider,
  type EventData,
  type NewEvent,
} from '@annals/core';
import { expect } from 'vitest';

/** What a thrown error must be: its class, optionally a message pattern; or a predicate. */
export type ErrorExpectation = (new (...args: any[]) => Error) | ((error: unknown) => boolean);

export interface DeciderThen<C extends AnyEventContract, S> {
  /** `decide` returned exactly these events (validated payloads compared), in order. */
  then(expected: readonly NewEvent<C>[]): Promise<void>;
  /** `decide` returned no events. */
  thenNothingHappened(): Promise<void>;
  /** The state after the given events and the decided ones equals `expected` (deep equality). */
  thenState(expected: S): Promise<void>;
  /** `decide` threw: an instance of the class (with a message matching `message`), or an error the predicate accepts. */
  thenThrows(expectation?: ErrorExpectation, message?: RegExp | string): Promise<void>;
}

export interface DeciderWhen<C extends AnyEventContract, S, Cmd> {
  when(command: Cmd): DeciderThen<C, S>;
}

export interface DeciderGiven<C extends AnyEventContract, S, Cmd> {
  /** The stream's events before the command (oldest first); `[]` for a new stream. */
  given(events: readonly NewEvent<C>[]): DeciderWhen<C, S, Cmd>;
}

function validated<C extends AnyEventContract>(decider: Decider<C, any, any>, events: readonly NewEvent<C>[], what: string): EventData<C>[] {
  if (!Array.isArray(events)) throw new InvalidOptionsError(`${what} must be an array of { type, payload } events.`);
  return events.map((e, i) => {
    const contract = decider.eventByType(e?.type);
    if (!contract) {
      throw new InvalidOptionsError(`${what}: event ${i} has type ${JSON.stringify(e?.type)}, which decider "${decider.name}" does not list (${decider.events.map((c) => c.type).join(', ')}).`);
    }
    return { type: e.type, payload: contract.validate(e.payload) } as EventData<C>;
  });
}

type Outcome<C extends AnyEventContract> = { readonly events: EventData<C>[] } | { readonly error: unknown };

function specification<C extends AnyEventContract, S, Cmd>(decider: Decider<C, S, Cmd>): DeciderGiven<C, S, Cmd> {
  return {
    given(givenEvents) {
      return {
        when(command) {
          let run: Promise<{ state: S; outcome: Outcome<C> }> | undefined;
          const outcome = () =>
            (run ??= (async () => {
              const history = validated(decider, givenEvents, 'given');
              const state = decider.fold(history);
              let decided: readonly NewEvent<C>[];
              try {
                decided = await decider.decide(command, state);
              } catch (error) {
                return { state, outcome: { error } };
              }
              // Outside the catch: a payload its contract refuses is the decider's bug, not a refused command.
              return { state, outcome: { events: validated(decider, decided, `the events decider "${decider.name}" decided`) } };
            })());
          const decidedEvents = async (): Promise<{ state: S; events: EventData<C>[] }> => {
            const { state, outcome: o } = await outcome();
            if ('error' in o) throw new Error(`Expected decide to return events, but it threw: ${describe(o.error)}`, { cause: o.error });
            return { state, events: o.events };
          };
          return {
            async then(expected) {
              const { events } = await decidedEvents();
              expect(events, `the events decider "${decider.name}" decided`).toEqual(validated(decider, expected, 'then'));
            },
            async thenNothingHappened() {
              const { events } = await decidedEvents();
              expect(events, `decider "${decider.name}" decided events, but none were expected`).toEqual([]);
            },
            async thenState(expected) {
              const { state, events } = await decidedEvents();
              expect(decider.fold(events, state), `the state of decider "${decider.name}" after the given and decided events`).toEqual(expected);
            },
            async thenThrows(expectation, message) {
              const { outcome: o } = await outcome();
              if (!('error' in o)) {
                throw new Error(`Expected decide to throw, but it returned ${o.events.length} event(s): ${JSON.stringify(o.events.map((e) => e.type))}.`);
              }
              if (expectation === undefined) return;
              const isClass = typeof expectation === 'function' && expectation.prototype instanceof Error || expectation === Error;
              if (isClass) {
                expect(o.error).toBeInstanceOf(expectation);
                if (message !== undefined) expect((o.error as Error).message).toMatch(message);
              } else if (!(expectation as (error: unknown) => boolean)(o.error)) {
                throw new Error(`decide threw an error the predicate refused: ${describe(o.error)}`, { cause: o.error });
              }
            },
          };
        },
      };
    },
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Given/when/then for deciders (Emmett's `DeciderSpecification`). Every `then…` returns a promise:
 * await it.
 *
 * @example
 * ```ts
 * const spec = DeciderSpecification.for(Order);
 * it('pays a placed order', () =>
 *   spec.given([{ type: 'order.placed', payload: { orderId: 'o-1', totalCents: 1250 } }])
 *     .when({ type: 'pay', orderId: 'o-1' })
 *     .then([{ type: 'order.paid', payload: { orderId: 'o-1' } }]));
 * it('refuses to ship an unpaid order', () =>
 *   spec.given([]).when({ type: 'ship', orderId: 'o-1' }).thenThrows(OrderNotPaid));
 * ```
 */
export const DeciderSpecification = Object.freeze({
  for: <C extends AnyEventContract, S, Cmd>(decider: Decider<C, S, Cmd>): DeciderGiven<C, S, Cmd> => {
    if (!decider || decider.kind !== 'annals.decider') throw new InvalidOptionsError('DeciderSpecification.for(decider) needs a decider from defineDecider(...).');
    return specification(decider);
  },
});
