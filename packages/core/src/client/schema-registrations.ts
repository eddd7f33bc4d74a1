/**
 * Registration of event versions on publish, cached per client.
 *
 * The first publish of a contract's latest version by a client registers it (or finds it already
 * registered with the same fingerprint); every later publish of that contract by the client costs
 * one `WeakMap` lookup, no round trip. A version registered with another schema is refused with
 * `SchemaVersionConflictError` before anything is written, and is not cached: the next publish
 * asks again. Concurrent first publishes share one registration.
 */
import type { EventContract } from '../contracts/event.js';
import { SchemaVersionConflictError } from '../errors.js';
import { diffJsonSchemas } from '../schema/schema-diff.js';
import { versionSchemaOf } from '../schema/json-schema.js';
import type { SchemaRegistryStorage } from '../storage/schema-registry.js';

export class SchemaRegistrations {
  readonly #registry: () => SchemaRegistryStorage;
  readonly #clientId: string;
  readonly #enabled: boolean;
  readonly #retry: <T>(fn: () => Promise<T>) => Promise<T>;
  readonly #confirmed = new WeakSet<EventContract>();
  readonly #inflight = new WeakMap<EventContract, Promise<void>>();

  /** `retry` wraps each registry call in the client's retry policy (connection loss is retriable). */
  constructor(registry: () => SchemaRegistryStorage, clientId: string, enabled: boolean, retry: <T>(fn: () => Promise<T>) => Promise<T>) {
    this.#registry = registry;
    this.#retry = retry;
    this.#clientId = clientId;
    this.#enabled = enabled;
  }

  /**
   * Resolves once `contract`'s latest version is registered with this schema; `undefined` (no
   * promise, nothing to await) when this client already confirmed it or registration is off.
   */
  ensure(contract: EventContract, topic: string): Promise<void> | undefined {
    if (!this.#enabled || this.#confirmed.has(contract)) return undefined;
    let pending = this.#inflight.get(contract);
    if (!pending) {
      pending = this.#register(contract, topic).finally(() => this.#inflight.delete(contract));
      this.#inflight.set(contract, pending);
    }
    return pending;
  }

  async #register(contract: EventContract, topic: string): Promise<void> {
    const version = contract.latestVersion;
    const { schema, fingerprint } = versionSchemaOf(contract.schema(version)!);
    const result = await this.#retry(() =>
      this.#registry().register([{ eventType: contract.type, version, fingerprint, schema }], { registeredBy: this.#clientId }),
    );
    if (result.ok) {
      this.#confirmed.add(contract);
      return;
    }
    const { registered } = result.conflicts[0]!;
    const diff = diffJsonSchemas(registered.schema, schema);
    throw new SchemaVersionConflictError(
      `Event "${contract.type}" version ${version} is already registered with another schema` +
        `${registered.registeredBy ? ` (by ${registered.registeredBy})` : ''}; this contract's version ${version} differs:\n` +
        diff.map((l) => `  ${l}`).join('\n') +
        `\nA changed contract needs a new version: keep version ${version} as registered, add version ${version + 1} with an upcaster from ${version}, and publish that. Nothing was written.`,
      { registeredFingerprint: registered.fingerprint, localFingerprint: fingerprint, registeredBy: registered.registeredBy, diff },
      { ...(topic ? { topic } : {}), eventType: contract.type, schemaVersion: version },
    );
  }
}
