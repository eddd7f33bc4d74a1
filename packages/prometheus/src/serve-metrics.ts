/**
 * A tiny `/metrics` endpoint for a prom-client registry: GET (or HEAD) answers the exposition
 * text; a collection that fails answers 500 with the error's message, so Prometheus records the
 * scrape as failed (`up == 0`) instead of storing figures that are not true.
 */
import { InvalidOptionsError } from '@annals/core';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { register as defaultRegistry, type Registry } from 'prom-client';

/** Options of {@link serveMetrics}. */
export interface ServeMetricsInput {
  /** TCP port to listen on; `0` picks a free one (see {@link MetricsServer.port}). */
  readonly port: number;
  /**
   * Address to listen on. Loopback by default: expose the endpoint beyond the host deliberately
   * (e.g. `'0.0.0.0'` in a container whose port only Prometheus reaches).
   * @default '127.0.0.1'
   */
  readonly host?: string;
  /** Path of the endpoint. @default '/metrics' */
  readonly path?: string;
  /** The registry to expose. @default prom-client's default registry (`register`) */
  readonly registry?: Registry;
}

/** A listening metrics endpoint. */
export interface MetricsServer {
  /** The endpoint's URL, e.g. `http://127.0.0.1:9464/metrics`. */
  readonly url: string;
  /** The port listened on (the one picked when `port` was 0). */
  readonly port: number;
  /** Stops listening and closes open connections. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Serves a registry's metrics over HTTP; resolves once listening.
 *
 * @example
 * ```ts
 * const registry = new Registry();
 * registerAnnalsMetrics(annals, { registry });
 * await using server = await serveMetrics({ registry, port: 9464 });
 * // scrape http://127.0.0.1:9464/metrics
 * ```
 */
export async function serveMetrics(input: ServeMetricsInput): Promise<MetricsServer> {
  const port = input?.port;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new InvalidOptionsError(`serveMetrics: port must be an integer from 0 to 65535, got ${String(port)}.`);
  }
  const host = input.host ?? '127.0.0.1';
  const path = input.path ?? '/metrics';
  if (!path.startsWith('/')) throw new InvalidOptionsError(`serveMetrics: path must start with '/', got ${JSON.stringify(path)}.`);
  const registry = input.registry ?? defaultRegistry;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== path) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`Not found: metrics are at ${path}\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method not allowed\n');
      return;
    }
    let body: string;
    try {
      body = await registry.metrics();
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`# metrics collection failed\n# ${message.replace(/\n/g, ' ')}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  return Object.freeze({
    url: `http://${shownHost}:${actual}${path}`,
    port: actual,
    close,
    [Symbol.asyncDispose]: close,
  });
}
