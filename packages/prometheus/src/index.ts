/**
 * @annals/prometheus — lag monitoring for Annals with prom-client: kafka_exporter-style metrics
 * computed on scrape, and a small `/metrics` endpoint. The export list is written out by name.
 */
export { MetricsCollectionTimeoutError, registerAnnalsMetrics } from './annals-metrics.js';
export type { AnnalsMetrics, AnnalsMetricsInput, AnnalsMetricsOptions } from './annals-metrics.js';
export { serveMetrics } from './serve-metrics.js';
export type { MetricsServer, ServeMetricsInput } from './serve-metrics.js';
