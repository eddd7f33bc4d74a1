/**
 * A TCP proxy on 127.0.0.1 for fault-injection tests: it forwards a client's connection to a
 * PostgreSQL server and can cut connections at chosen moments — every connection now, or just
 * after a COMMIT has reached the server but before its reply reaches the client (the "lost
 * acknowledgement" that idempotent producers exist for).
 *
 * It only ever connects to the loopback target it was given.
 */
import net from 'node:net';

export interface FaultProxyOptions {
  /** The server to forward to, e.g. `{ host: '127.0.0.1', port: 5432 }`. Must be a loopback address. */
  readonly target: { readonly host: string; readonly port: number };
}

interface Pair {
  readonly client: net.Socket;
  readonly server: net.Socket;
  /** Set when this connection's next COMMIT reply must be swallowed and the connection cut. */
  dropNextCommitReply: boolean;
  commitInFlight: boolean;
}

// A simple-query message: 'Q', int32 length, then the SQL text, NUL-terminated.
// Walks the chunk message by message (type byte + int32 length) so bytes inside other messages
// are never mistaken for a query.
function isCommitQuery(chunk: Buffer): boolean {
  let i = 0;
  while (i + 5 <= chunk.length) {
    const len = chunk.readInt32BE(i + 1);
    if (len < 4) return false;
    if (chunk[i] === 0x51 /* 'Q' */) {
      const text = chunk.subarray(i + 5, Math.min(chunk.length, i + len)).toString('utf8').replace(/\0+$/, '').trim().toUpperCase();
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
  #commitDrops = 0;
  /** How many COMMIT replies were swallowed so far. */
  droppedCommits = 0;

  constructor(options: FaultProxyOptions) {
    const { host, port } = options.target;
    if (!/^(127\.\d+\.\d+\.\d+|localhost|::1)$/.test(host)) throw new Error(`FaultProxy only targets loopback addresses, not ${host}.`);
    this.#target = { host, port };
  }

  /** Starts listening on a free loopback port; returns it. */
  async start(): Promise<number> {
    const server = net.createServer((client) => this.#accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.#server = server;
    this.#port = (server.address() as net.AddressInfo).port;
    return this.#port;
  }

  get port(): number {
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
    const server = net.connect(this.#target.port, this.#target.host);
    const pair: Pair = { client, server, dropNextCommitReply: false, commitInFlight: false };
    this.#pairs.add(pair);
    const close = () => {
      this.#pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      if (this.#commitDrops > 0 && isCommitQuery(chunk)) {
        this.#commitDrops--;
        pair.dropNextCommitReply = true;
      }
      server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (pair.dropNextCommitReply) {
        // The server has processed the COMMIT; the client never hears of it.
        this.droppedCommits++;
        close();
        return;
      }
      client.write(chunk);
    });
    client.on('error', close);
    server.on('error', close);
    client.on('close', close);
    server.on('close', close);
  }

  /** The next `n` COMMITs sent through the proxy reach the server, but their replies are lost and the connection cut. */
  dropCommitReplies(n = 1): void {
    this.#commitDrops += n;
  }

  /** Cuts every open connection now. */
  cutAll(): void {
    for (const p of this.#pairs) {
      p.client.destroy();
      p.server.destroy();
    }
    this.#pairs.clear();
  }

  /** Number of open proxied connections. */
  get connections(): number {
    return this.#pairs.size;
  }

  async stop(): Promise<void> {
    this.cutAll();
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
