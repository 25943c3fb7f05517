/**
 * Every Service's outbound virtual hosts, encoded once when the Service's ports change (not when its
 * endpoints do), from which each sidecar profile's route configuration is assembled by concatenation
 * (outbound-views.ts). Fed by the translation pipeline alongside the cache.
 */
import { EventEmitter } from 'node:events';
import type { ServiceKey, ServiceModel } from '../model/types.js';
import { codecFor } from '../protos/envoy-protos.js';
import { MessageName } from './resource-types.js';
import {
  outboundServiceOf,
  outboundShapeKey,
  serviceVirtualHosts,
  type OutboundService,
} from './translate-outbound.js';

interface CatalogEntry {
  readonly service: OutboundService;
  readonly shape: string;
  /** RouteConfiguration bytes holding only `virtual_hosts`, with and without the bare `svc` names. */
  withBareNames: Buffer | undefined;
  qualifiedOnly: Buffer | undefined;
}

const routeCodec = () => codecFor<Record<string, unknown>>(MessageName.ROUTE_CONFIGURATION);

export class OutboundCatalog extends EventEmitter<{ change: [] }> {
  readonly #entries = new Map<ServiceKey, CatalogEntry>();
  /** Services whose virtual hosts changed since views last looked. */
  #pending = new Set<ServiceKey>();

  /** Records a Service as it now is (undefined: gone). Cheap when only its endpoints changed. */
  update(key: ServiceKey, service: ServiceModel | undefined): void {
    const existing = this.#entries.get(key);
    if (service === undefined) {
      if (existing && this.#entries.delete(key)) this.#pending.add(key);
      return;
    }
    const outbound = outboundServiceOf(service);
    const shape = outboundShapeKey(outbound);
    if (existing?.shape === shape) return;
    this.#entries.set(key, { service: outbound, shape, withBareNames: undefined, qualifiedOnly: undefined });
    this.#pending.add(key);
  }

  /** The Services changed since the last call, and forgets them. */
  takePending(): ReadonlySet<ServiceKey> {
    const pending = this.#pending;
    if (pending.size > 0) this.#pending = new Set();
    return pending;
  }

  /** Tells views about changes no cache change carried (a port renumbered, say). */
  publish(): void {
    if (this.#pending.size > 0) this.emit('change');
  }

  keys(): IterableIterator<ServiceKey> {
    return this.#entries.keys();
  }

  /** The encoded virtual hosts of one Service, encoded on first use for each form. */
  virtualHostBytes(key: ServiceKey, bareNames: boolean): Buffer | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (bareNames) {
      entry.withBareNames ??= routeCodec().encode({
        virtual_hosts: serviceVirtualHosts(entry.service, true),
      });
      return entry.withBareNames;
    }
    entry.qualifiedOnly ??= routeCodec().encode({ virtual_hosts: serviceVirtualHosts(entry.service, false) });
    return entry.qualifiedOnly;
  }

  namespaceOf(key: ServiceKey): string | undefined {
    return this.#entries.get(key)?.service.namespace;
  }
}
