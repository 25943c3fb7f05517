/**
 * ext_proc metrics. Registered into the caller's Registry (so `serve` and `extproc` can expose one
 * /metrics) or into a private one when none is given, which keeps tests and repeated starts independent.
 */
import { Counter, Histogram, Registry } from 'prom-client';

export interface ExtprocMetrics {
  readonly registry: Registry;
  readonly mapped: Counter<'cause' | 'status'>;
  readonly passed: Counter<'reason'>;
  readonly protocolErrors: Counter<'kind'>;
  readonly processingSeconds: Histogram<'outcome'>;
}

/** Metric names are part of readygate's interface; dashboards match on them. */
export const EXTPROC_METRIC_NAMES = {
  mapped: 'readygate_extproc_mapped_responses_total',
  passed: 'readygate_extproc_passthrough_responses_total',
  protocolErrors: 'readygate_extproc_protocol_errors_total',
  processingSeconds: 'readygate_extproc_processing_seconds',
} as const;

export function createExtprocMetrics(registry: Registry = new Registry()): ExtprocMetrics {
  // A registry that already has them (a second server in the same process) shares the series.
  const mapped = registry.getSingleMetric(EXTPROC_METRIC_NAMES.mapped) as
    Counter<'cause' | 'status'> | undefined;
  const passed = registry.getSingleMetric(EXTPROC_METRIC_NAMES.passed) as Counter<'reason'> | undefined;
  const protocolErrors = registry.getSingleMetric(EXTPROC_METRIC_NAMES.protocolErrors) as
    Counter<'kind'> | undefined;
  const processingSeconds = registry.getSingleMetric(EXTPROC_METRIC_NAMES.processingSeconds) as
    Histogram<'outcome'> | undefined;
  return {
    registry,
    mapped:
      mapped ??
      new Counter({
        name: EXTPROC_METRIC_NAMES.mapped,
        help: 'Responses readygate replaced, by failure cause and the status sent',
        labelNames: ['cause', 'status'] as const,
        registers: [registry],
      }),
    passed:
      passed ??
      new Counter({
        name: EXTPROC_METRIC_NAMES.passed,
        help: 'Responses left untouched, by reason',
        labelNames: ['reason'] as const,
        registers: [registry],
      }),
    protocolErrors:
      protocolErrors ??
      new Counter({
        name: EXTPROC_METRIC_NAMES.protocolErrors,
        help: 'ext_proc streams ended with an error status because a ProcessingRequest broke the protocol',
        labelNames: ['kind'] as const,
        registers: [registry],
      }),
    processingSeconds:
      processingSeconds ??
      new Histogram({
        name: EXTPROC_METRIC_NAMES.processingSeconds,
        help: 'Time from receiving response_headers to writing the answer',
        labelNames: ['outcome'] as const,
        // Sub-millisecond work; the tail buckets show event-loop stalls.
        buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
        registers: [registry],
      }),
  };
}
