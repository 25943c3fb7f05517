/**
 * ext_proc metrics. Registered into the caller's Registry (so `serve` and `extproc` can expose one
 * /metrics) or into a private one when none is given, which keeps tests and repeated starts independent.
 */
import { Counter, Histogram, Registry } from 'prom-client';

export interface ExtprocMetrics {
  readonly registry: Registry;
  readonly mapped: Counter<'cause' | 'status'>;
  /** Mapped responses per Service and cause; Service labels are capped (serviceLabel). */
  readonly mappedByService: Counter<'service' | 'cause'>;
  /** The `service` label for a cluster name, within the cap. */
  serviceLabel(clusterName: string | undefined): string;
  readonly passed: Counter<'reason'>;
  readonly protocolErrors: Counter<'kind'>;
  readonly processingSeconds: Histogram<'outcome'>;
}

/** Metric names are part of readygate's interface; dashboards match on them. */
export const EXTPROC_METRIC_NAMES = {
  mapped: 'readygate_extproc_mapped_responses_total',
  mappedByService: 'readygate_extproc_mapped_responses_by_service_total',
  passed: 'readygate_extproc_passthrough_responses_total',
  protocolErrors: 'readygate_extproc_protocol_errors_total',
  processingSeconds: 'readygate_extproc_processing_seconds',
} as const;

/**
 * Distinct `service` label values per process. Cluster names come from Envoy and, with many Services (or a
 * gateway routing to clusters readygate does not know), would grow the series without bound; the first
 * MAX_SERVICE_LABELS Services get their own label, later ones count under OTHER_SERVICE_LABEL.
 */
export const MAX_SERVICE_LABELS = 200;
export const OTHER_SERVICE_LABEL = 'other';
/** No `xds.cluster_name` (no route matched, or the attribute is missing from the bootstrap). */
export const UNKNOWN_SERVICE_LABEL = 'unknown';

/**
 * `<namespace>/<name>` from readygate's cluster name `<namespace>/<name>:<port>`; any other cluster name
 * (a static cluster of the bootstrap) is kept whole. Capped at MAX_SERVICE_LABELS distinct values.
 */
export function serviceLabeler(max = MAX_SERVICE_LABELS): (clusterName: string | undefined) => string {
  const seen = new Set<string>();
  return (clusterName) => {
    if (clusterName === undefined || clusterName === '') return UNKNOWN_SERVICE_LABEL;
    const colon = clusterName.lastIndexOf(':');
    const service = clusterName.includes('/') && colon > 0 ? clusterName.slice(0, colon) : clusterName;
    if (seen.has(service)) return service;
    if (seen.size >= max) return OTHER_SERVICE_LABEL;
    seen.add(service);
    return service;
  };
}

export function createExtprocMetrics(registry: Registry = new Registry()): ExtprocMetrics {
  // A registry that already has them (a second server in the same process) shares the series.
  const mapped = registry.getSingleMetric(EXTPROC_METRIC_NAMES.mapped) as
    Counter<'cause' | 'status'> | undefined;
  const mappedByService = registry.getSingleMetric(EXTPROC_METRIC_NAMES.mappedByService) as
    Counter<'service' | 'cause'> | undefined;
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
    mappedByService:
      mappedByService ??
      new Counter({
        name: EXTPROC_METRIC_NAMES.mappedByService,
        help: `Responses readygate replaced, by Service (namespace/name; at most ${MAX_SERVICE_LABELS}, then "${OTHER_SERVICE_LABEL}") and failure cause`,
        labelNames: ['service', 'cause'] as const,
        registers: [registry],
      }),
    serviceLabel: serviceLabeler(),
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
