/**
 * Holds the current services and tells listeners which ones changed. Sources write here; the xDS
 * pipeline reads. An unchanged service keeps its object identity, so per-service work downstream
 * (translation, encoding) is skipped by identity and a relist that changes nothing pushes nothing.
 */
import { EventEmitter } from 'node:events';
import { serviceKey, type ServiceKey, type ServiceModel } from './types.js';

export interface StoreChange {
  /** Services added or modified. */
  readonly changed: readonly ServiceKey[];
  readonly removed: readonly ServiceKey[];
}

export interface EndpointStoreEvents {
  change: [StoreChange];
  synced: [];
}

export class EndpointStore extends EventEmitter<EndpointStoreEvents> {
  readonly #services = new Map<ServiceKey, { model: ServiceModel; fingerprint: string }>();
  #synced = false;

  get services(): ServiceModel[] {
    return [...this.#services.values()].map((entry) => entry.model);
  }

  get(key: ServiceKey): ServiceModel | undefined {
    return this.#services.get(key)?.model;
  }

  get size(): number {
    return this.#services.size;
  }

  /** True once the source has delivered its first complete view (drives /readyz). */
  get synced(): boolean {
    return this.#synced;
  }

  markSynced(): void {
    if (this.#synced) return;
    this.#synced = true;
    this.emit('synced');
  }

  /** Adds or replaces one service; returns whether anything changed. */
  upsert(service: ServiceModel): boolean {
    const changed = this.#put(service);
    if (changed) this.emit('change', { changed: [serviceKey(service)], removed: [] });
    return changed;
  }

  delete(key: ServiceKey): boolean {
    if (!this.#services.delete(key)) return false;
    this.emit('change', { changed: [], removed: [key] });
    return true;
  }

  /** Makes the store hold exactly `services` (a file reload or a relist), emitting one combined change. */
  replaceAll(services: readonly ServiceModel[]): StoreChange {
    const next = new Set<ServiceKey>();
    const changed: ServiceKey[] = [];
    for (const service of services) {
      const key = serviceKey(service);
      next.add(key);
      if (this.#put(service)) changed.push(key);
    }
    const removed: ServiceKey[] = [];
    for (const key of this.#services.keys()) {
      if (!next.has(key)) removed.push(key);
    }
    for (const key of removed) this.#services.delete(key);
    const change = { changed, removed };
    if (changed.length > 0 || removed.length > 0) this.emit('change', change);
    return change;
  }

  #put(service: ServiceModel): boolean {
    const key = serviceKey(service);
    const fingerprint = stableStringify(service);
    const existing = this.#services.get(key);
    if (existing?.fingerprint === fingerprint) return false;
    this.#services.set(key, { model: service, fingerprint });
    return true;
  }
}

/** JSON with object keys sorted and undefined fields dropped, so equal content gives an equal string. */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}
