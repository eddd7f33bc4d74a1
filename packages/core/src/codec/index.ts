/**
 * Codecs: how a record's value becomes bytes and back. `msgpackCodec()` is the default;
 * `jsonCodec()` is for topics read as text by other tools.
 */
export { resolveDecodeLimits } from './codec.js';
export type { Codec, DecodeLimits, DecodeLimitsInput } from './codec.js';
export { jsonCodec } from './json-codec.js';
export type { JsonCodecOptions } from './json-codec.js';
export { msgpackCodec } from './msgpack-codec.js';
export type { MsgpackCodecOptions } from './msgpack-codec.js';
