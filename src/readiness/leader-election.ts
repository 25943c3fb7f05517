/**
 * Leader election over a coordination.k8s.io/v1 Lease, client-go style: only the leader writes pod status;
 * every replica keeps serving xDS. Needs `leases: get, create, update` in the Lease's namespace, nothing else.
 *
 * Expiry is judged by this replica's own clock from when it last *saw the record change*, never by
 * comparing the holder's renewTime with local time, so clock skew between replicas cannot cause two
 * leaders. Writes use the Lease's resourceVersion (optimistic concurrency): of two candidates racing for
 * an expired Lease, exactly one update succeeds.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import {
  CoordinationV1Api,
  V1Lease,
  V1LeaseSpec,
  V1MicroTime,
  V1ObjectMeta,
  type KubeConfig,
} from '@kubernetes/client-node';
import { ErrorCode, errorMessage, ReadygateError } from '../errors.js';
import { withDeadline } from '../net.js';
import { silentLogger, type Logger } from '../log.js';
import { statusOf } from '../sources/kubernetes-watch.js';

export interface LeaderElectionOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly name?: string;
  /** Unique per replica; default `<hostname>-<random>` (the pod name in a Deployment). */
  readonly identity?: string;
  /** How long a Lease stays valid without renewal. */
  readonly leaseDurationMs?: number;
  /** The leader steps down if it could not renew for this long (must be < leaseDurationMs). */
  readonly renewDeadlineMs?: number;
  /** How often to try to acquire or renew. */
  readonly retryPeriodMs?: number;
  readonly logger?: Logger;
  readonly onChange?: (leader: boolean) => void;
}

export const DEFAULT_LEASE_NAME = 'readygate-readiness-gates';

export class LeaderElector {
  readonly identity: string;
  readonly #api: CoordinationV1Api;
  readonly #namespace: string;
  readonly #name: string;
  readonly #leaseMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryMs: number;
  readonly #logger: Logger;
  readonly #onChange: ((leader: boolean) => void) | undefined;
  #leader = false;
  #lastRenewedAt = 0;
  /** The record last seen (holder + renewTime + transitions) and when this replica saw it change. */
  #observedRecord = '';
  #observedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(options: LeaderElectionOptions) {
    this.identity = options.identity ?? `${hostname()}-${randomBytes(3).toString('hex')}`;
    this.#api = options.kubeConfig.makeApiClient(CoordinationV1Api);
    this.#namespace = options.namespace;
    this.#name = options.name ?? DEFAULT_LEASE_NAME;
    this.#leaseMs = options.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = Math.min(options.renewDeadlineMs ?? 10_000, this.#leaseMs - 1);
    this.#retryMs = options.retryPeriodMs ?? 2_000;
    this.#logger = (options.logger ?? silentLogger).child({
      component: 'leader-election',
      lease: `${this.#namespace}/${this.#name}`,
      identity: this.identity,
    });
    this.#onChange = options.onChange;
  }

  get leader(): boolean {
    // Checked at use, not only per tick: a leader that could not renew must stop writing on time.
    if (this.#leader && Date.now() - this.#lastRenewedAt > this.#renewDeadlineMs) this.#setLeader(false);
    return this.#leader;
  }

  start(): this {
    const tick = (): void => {
      if (this.#stopped) return;
      this.#running = this.#tryAcquireOrRenew().finally(() => {
        this.#running = undefined;
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#retryMs);
      });
    };
    tick();
    return this;
  }

  /**
   * Stops campaigning. With `release` (a graceful shutdown), a leader hands the Lease back at once so
   * another replica takes over in one retry period instead of a whole lease duration.
   */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    if (options.release && this.#leader) {
      try {
        const lease = await this.#call(
          'readNamespacedLease',
          this.#api.readNamespacedLease({ name: this.#name, namespace: this.#namespace }),
        );
        if (lease.spec?.holderIdentity === this.identity) {
          // Holder and times cleared (the spec's fields are optional; absent = released).
          const released = new V1LeaseSpec();
          released.leaseDurationSeconds = 1;
          if (lease.spec.leaseTransitions !== undefined)
            released.leaseTransitions = lease.spec.leaseTransitions;
          lease.spec = released;
          await this.#call(
            'replaceNamespacedLease',
            this.#api.replaceNamespacedLease({
              name: this.#name,
              namespace: this.#namespace,
              body: lease,
            }),
          );
          this.#logger.info('released the lease');
        }
      } catch (error) {
        this.#logger.warn({ err: errorMessage(error) }, 'could not release the lease; it will expire');
      }
    }
    this.#setLeader(false);
  }

  /**
   * A Lease call with a deadline: client-node's calls have none, and a renewal stuck on a hung API
   * server would keep this replica leader (it steps down only between calls). Half the renew deadline,
   * so a read and a write together still end within it.
   */
  #call<T>(what: string, call: Promise<T>): Promise<T> {
    const ms = Math.max(1, Math.floor(this.#renewDeadlineMs / 2));
    return withDeadline(
      call,
      ms,
      what,
      () => new ReadygateError(ErrorCode.KUBERNETES_UNAVAILABLE, `Lease ${what}: no answer within ${ms} ms`),
    );
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const now = Date.now();
    let lease: V1Lease;
    try {
      lease = await this.#call(
        'readNamespacedLease',
        this.#api.readNamespacedLease({ name: this.#name, namespace: this.#namespace }),
      );
    } catch (error) {
      if (statusOf(error) === 404) {
        await this.#create(now);
        return;
      }
      this.#failed('read', error);
      return;
    }
    const spec = lease.spec ?? new V1LeaseSpec();
    const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseTransitions]);
    if (record !== this.#observedRecord) {
      this.#observedRecord = record;
      this.#observedAt = now;
    }
    const holder = spec.holderIdentity ?? '';
    const durationMs = (spec.leaseDurationSeconds ?? this.#leaseMs / 1000) * 1000;
    const expired = holder === '' || now - this.#observedAt > durationMs;
    if (holder !== this.identity && !expired) {
      if (this.#leader) this.#setLeader(false);
      return;
    }
    const takingOver = holder !== this.identity;
    const stamp = new V1MicroTime(now);
    spec.holderIdentity = this.identity;
    spec.leaseDurationSeconds = Math.ceil(this.#leaseMs / 1000);
    spec.renewTime = stamp;
    if (takingOver) {
      spec.acquireTime = stamp;
      spec.leaseTransitions = (spec.leaseTransitions ?? 0) + (holder === '' ? 0 : 1);
    }
    lease.spec = spec;
    try {
      // resourceVersion from the read makes this a compare-and-swap.
      await this.#call(
        'replaceNamespacedLease',
        this.#api.replaceNamespacedLease({ name: this.#name, namespace: this.#namespace, body: lease }),
      );
    } catch (error) {
      // 409 while taking over: another candidate wrote first; read again next tick.
      if (statusOf(error) === 409 && takingOver) return;
      this.#failed('update', error);
      return;
    }
    if (takingOver) this.#logger.info({ previous: holder || null }, 'acquired the lease');
    this.#renewed(now);
  }

  async #create(now: number): Promise<void> {
    const stamp = new V1MicroTime(now);
    try {
      const body = new V1Lease();
      body.apiVersion = 'coordination.k8s.io/v1';
      body.kind = 'Lease';
      const metadata = new V1ObjectMeta();
      metadata.name = this.#name;
      metadata.namespace = this.#namespace;
      const spec = new V1LeaseSpec();
      spec.holderIdentity = this.identity;
      spec.leaseDurationSeconds = Math.ceil(this.#leaseMs / 1000);
      spec.acquireTime = stamp;
      spec.renewTime = stamp;
      spec.leaseTransitions = 0;
      body.metadata = metadata;
      body.spec = spec;
      await this.#call(
        'createNamespacedLease',
        this.#api.createNamespacedLease({ namespace: this.#namespace, body }),
      );
    } catch (error) {
      if (statusOf(error) !== 409) this.#failed('create', error);
      return;
    }
    this.#logger.info('created and acquired the lease');
    this.#renewed(now);
  }

  #renewed(now: number): void {
    this.#lastRenewedAt = now;
    this.#observedAt = now;
    if (!this.#leader) this.#setLeader(true);
  }

  #failed(what: string, error: unknown): void {
    const status = statusOf(error);
    const fields = { status, err: errorMessage(error) };
    if (status === 401 || status === 403) {
      this.#logger.error(fields, `cannot ${what} the lease: readygate needs leases get/create/update (RBAC)`);
    } else {
      this.#logger.warn(fields, `cannot ${what} the lease; retrying`);
    }
    // Step down now if the renew deadline has passed (the getter does it).
    if (!this.leader) return;
  }

  #setLeader(leader: boolean): void {
    if (this.#leader === leader) return;
    this.#leader = leader;
    this.#logger.info({ leader }, leader ? 'became the leader' : 'no longer the leader');
    this.#onChange?.(leader);
  }
}
