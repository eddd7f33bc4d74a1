/**
 * A TCP proxy on 127.0.0.1 for fault-injection tests, between clients and PostgreSQL. It injects
 * network faults: latency, cut connections (FIN), reset connections (RST), a black hole (bytes are
 * swallowed and the sockets stay open until the hole closes, then they are reset), refused
 * connections, and a COMMIT whose reply is lost (the server commits, the client never hears of
 * it: the "unknown outcome" idempotent producers exist for). Used by the tests and by `npm run
 * chaos`; importable without vitest from `@annals/testing/fault-proxy`.
 *
 * It listens on 127.0.0.1 only and forwards only to a loopback target.
 */
import net from 'node:net';

/** Options of {@link FaultProxy}. */
export interface FaultProxyOptions {
  /** The PostgreSQL server to forward to: a loopback address only. */
  readonly target: { readonly host: string; readonly port: number };
}

interface Pair {
  readonly client: net.Socket;
  readonly server: net.Socket;
  dropNextReply: boolean;
  /** Chunks waiting for their delay, per direction, to keep byte order. */
  toServer: Promise<void>;
  toClient: Promise<void>;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/** True when a client chunk holds a simple-query COMMIT (walks the messages, so bytes inside others never match). */
export function holdsCommit(chunk: Buffer): boolean {
  let i = 0;
  while (i + 5 <= chunk.length) {
    const len = chunk.readInt32BE(i + 1);
    if (len < 4) return false;
    if (chunk[i] === 0x51) {
      const text = chunk.subarray(i + 5, Math.min(chunk.length, i + 1 + len)).toString('utf8').replace(/\0+$/, '').trim().toUpperCase();
      if (text === 'COMMIT' || text === 'COMMIT;' || text === 'END') return true;
    }
    i += 1 + len;
  }
  return false;
}

export class FaultProxy {
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<Pair>();
  #server: net.Server | undefined;
  #port = 0;
  #delayMs = 0;
  #blackhole = false;
  #refuse = false;
  #commitDrops = 0;
  /** Counters of what was done, for the report. */
  readonly stats = { connections: 0, cut: 0, reset: 0, refused: 0, droppedCommitReplies: 0, blackholed: 0 };

  constructor(options: FaultProxyOptions) {
    const { host, port } = options.target;
    if (!LOOPBACK.test(host)) throw new Error(`FaultProxy only forwards to loopback addresses, not ${host}.`);
    this.#target = { host, port };
  }

  /** The port it listens on (after `start()`). */
  get port(): number {
    return this.#port;
  }

  /** COMMIT replies dropped so far. */
  get droppedCommits(): number {
    return this.stats.droppedCommitReplies;
  }

  async start(): Promise<number> {
    const server = net.createServer((client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    this.#server = server;
    this.#port = (server.address() as net.AddressInfo).port;
    return this.#port;
  }

  /** A connection string through the proxy, from one that points at the target. */
  connectionString(direct: string): string {
    const url = new URL(direct);
    url.hostname = '127.0.0.1';
    url.port = String(this.#port);
    return url.toString();
  }

  #accept(client: net.Socket): void {
    if (this.#refuse) {
      this.stats.refused++;
      client.resetAndDestroy();
      return;
    }
    this.stats.connections++;
    const server = net.connect(this.#target.port, this.#target.host);
    const pair: Pair = { client, server, dropNextReply: false, toServer: Promise.resolve(), toClient: Promise.resolve() };
    this.#pairs.add(pair);
    const close = () => {
      this.#pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    const forward = (to: net.Socket, chunk: Buffer, direction: 'toServer' | 'toClient') => {
      if (this.#blackhole) {
        this.stats.blackholed++;
        return;
      }
      const delay = this.#delayMs;
      if (delay === 0) {
        // Keep order behind chunks still waiting for an earlier delay.
        pair[direction] = pair[direction].then(() => void (to.destroyed || to.write(chunk)));
        return;
      }
      pair[direction] = pair[direction].then(
        () => new Promise<void>((resolve) => setTimeout(() => (to.destroyed || to.write(chunk), resolve()), delay)),
      );
    };
    client.on('data', (chunk: Buffer) => {
      if (this.#commitDrops > 0 && !this.#blackhole && holdsCommit(chunk)) {
        this.#commitDrops--;
        pair.dropNextReply = true;
      }
      forward(server, chunk, 'toServer');
    });
    server.on('data', (chunk: Buffer) => {
      if (pair.dropNextReply) {
        // The server has processed the COMMIT: the client never hears of it.
        this.stats.droppedCommitReplies++;
        this.#pairs.delete(pair);
        client.resetAndDestroy();
        server.destroy();
        return;
      }
      forward(client, chunk, 'toClient');
    });
    for (const socket of [client, server]) {
      socket.on('error', close);
      socket.on('close', close);
    }
  }

  /** Adds latency to every chunk, both ways (0 turns it off). */
  delay(ms: number): void {
    this.#delayMs = Math.max(0, ms);
  }

  /** Closes every open connection (FIN). */
  cutAll(): number {
    const n = this.#pairs.size;
    for (const p of this.#pairs) {
      p.client.end();
      p.client.destroy();
      p.server.destroy();
    }
    this.#pairs.clear();
    this.stats.cut += n;
    return n;
  }

  /** Resets every open connection (RST). */
  resetAll(): number {
    const n = this.#pairs.size;
    for (const p of this.#pairs) {
      p.client.resetAndDestroy();
      p.server.resetAndDestroy();
    }
    this.#pairs.clear();
    this.stats.reset += n;
    return n;
  }

  /** Swallows every byte, both ways, for `ms` (sockets stay open: the peers just hear nothing); then resets those connections. */
  async blackhole(ms: number): Promise<void> {
    this.#blackhole = true;
    await new Promise((resolve) => setTimeout(resolve, ms));
    this.#blackhole = false;
    this.resetAll();
  }

  /** Refuses new connections for `ms`. */
  async refuse(ms: number): Promise<void> {
    this.#refuse = true;
    await new Promise((resolve) => setTimeout(resolve, ms));
    this.#refuse = false;
  }

  /** The next `n` COMMITs reach the server, but their replies are lost and the connection reset. */
  dropCommitReplies(n = 1): void {
    this.#commitDrops += n;
  }

  get connections(): number {
    return this.#pairs.size;
  }

  async stop(): Promise<void> {
    this.resetAll();
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
