/**
 * Tells people about invalid `readygate.io/*` annotations, for every source: one log line per new problem
 * (per Service and key, at most once a minute), a counter and a gauge by key, the /debug/policy view and,
 * with the Kubernetes source, an Event on the Service. Translation never needs this: it drops bad keys on
 * its own (src/model/policy.ts), so reporting failing can never keep a Service from being served.
 */
import { Counter, Gauge, type Metric, type Registry } from 'prom-client';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { parsePolicy, PolicyKey, problemLabel, type PolicyProblem } from '../model/policy.js';
import type { EndpointStore, StoreChange } from '../model/store.js';
import type { ServiceKey } from '../model/types.js';

/** Records one problem somewhere durable (a Kubernetes Event). Failures are logged, never retried here. */
export type PolicyProblemSink = (service: ServiceKey, problem: PolicyProblem) => Promise<void>;

/** The bounded label set of the policy metrics: every known key, and `unknown` for any other. */
const PROBLEM_LABELS: readonly string[] = [...Object.values(PolicyKey), 'unknown'];

/** A flapping annotation (an operator trying values) logs at most this often per Service and key. */
export const POLICY_LOG_INTERVAL_MS = 60_000;

export interface PolicyProblemReporterOptions {
  readonly store: EndpointStore;
  readonly logger: Logger;
  readonly registry?: Registry;
  readonly events?: PolicyProblemSink;
  readonly now?: () => number;
}

interface ReportedProblem extends PolicyProblem {
  /** ISO time the problem (this key with this message) was first seen. */
  readonly since: string;
}

export class PolicyProblemReporter {
  readonly #store: EndpointStore;
  readonly #logger: Logger;
  readonly #events: PolicyProblemSink | undefined;
  readonly #now: () => number;
  readonly #current = new Map<ServiceKey, readonly ReportedProblem[]>();
  /** `<service> <key>` → when it was last logged. */
  readonly #lastLogged = new Map<string, number>();
  readonly #found: Counter<'key'> | undefined;
  readonly #onChange = (change: StoreChange): void => {
    for (const key of [...change.changed, ...change.removed]) this.#check(key);
  };

  constructor(options: PolicyProblemReporterOptions) {
    this.#store = options.store;
    this.#logger = options.logger;
    this.#events = options.events;
    this.#now = options.now ?? Date.now;
    if (options.registry) {
      const registry = options.registry;
      this.#found = metric(
        registry,
        'readygate_policy_invalid_annotations_total',
        () =>
          new Counter({
            name: 'readygate_policy_invalid_annotations_total',
            help: 'Invalid readygate.io/* annotation values found (each falls back to its default), by key; unknown keys count as key="unknown".',
            labelNames: ['key'],
            registers: [registry],
          }),
      );
      const counts = (): Map<string, number> => this.countsByLabel();
      metric(
        registry,
        'readygate_policy_invalid_annotations',
        () =>
          new Gauge({
            name: 'readygate_policy_invalid_annotations',
            help: 'Invalid readygate.io/* annotations in effect now (Services × keys), by key; 0 once fixed.',
            labelNames: ['key'],
            registers: [registry],
            collect() {
              // Every label always present, so a fixed key reads 0 instead of keeping its last count.
              const now = counts();
              for (const key of PROBLEM_LABELS) this.set({ key }, now.get(key) ?? 0);
            },
          }),
      );
    }
    for (const service of this.#store.services) this.#check(`${service.namespace}/${service.name}`);
    this.#store.on('change', this.#onChange);
  }

  /** The /debug/policy view: every Service with a problem now, and what it is. */
  toJSON(): { service: ServiceKey; problems: readonly ReportedProblem[] }[] {
    return [...this.#current.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([service, problems]) => ({ service, problems }));
  }

  close(): void {
    this.#store.off('change', this.#onChange);
  }

  #check(service: ServiceKey): void {
    const model = this.#store.get(service);
    const problems = model ? parsePolicy(model.annotations).problems : [];
    const before = this.#current.get(service) ?? [];
    const now = this.#now();
    const reported: ReportedProblem[] = problems.map((problem) => {
      const same = before.find((old) => old.key === problem.key && old.message === problem.message);
      return same ?? { ...problem, since: new Date(now).toISOString() };
    });
    for (const problem of reported) {
      if (before.includes(problem)) continue;
      this.#found?.inc({ key: problemLabel(problem.key) });
      this.#log(service, problem, now);
      this.#record(service, problem);
    }
    for (const old of before) {
      if (!problems.some((p) => p.key === old.key)) {
        this.#logger.info(
          { event: 'policy.annotation-fixed', service, key: old.key },
          `${service}: ${old.key} is valid again or gone`,
        );
      }
    }
    if (reported.length > 0) this.#current.set(service, reported);
    else this.#current.delete(service);
    // A deleted Service's rate-limit entries go with it, so the map is bounded by the live Services.
    if (!model) {
      for (const id of this.#lastLogged.keys()) if (id.startsWith(`${service} `)) this.#lastLogged.delete(id);
    }
  }

  #log(service: ServiceKey, problem: PolicyProblem, now: number): void {
    const id = `${service} ${problem.key}`;
    const last = this.#lastLogged.get(id);
    if (last !== undefined && now - last < POLICY_LOG_INTERVAL_MS) return;
    this.#lastLogged.set(id, now);
    this.#logger.warn(
      { event: 'policy.invalid-annotation', service, key: problem.key },
      `${service}: ${problem.message}; using the default`,
    );
  }

  #record(service: ServiceKey, problem: PolicyProblem): void {
    if (!this.#events) return;
    this.#events(service, problem).catch((error: unknown) => {
      this.#logger.warn(
        { event: 'policy.event-failed', service, key: problem.key, err: errorMessage(error) },
        `cannot record an InvalidAnnotation Event on ${service}`,
      );
    });
  }

  /** Count of (Service, key) problems in effect, by metric label. */
  countsByLabel(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const problems of this.#current.values()) {
      for (const problem of problems) {
        const label = problemLabel(problem.key);
        counts.set(label, (counts.get(label) ?? 0) + 1);
      }
    }
    return counts;
  }
}

function metric<M extends Metric>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create();
}
