/**
 * `readygate serve`: source → store → control plane, plus the admin server and optionally ext_proc.
 * Thin on purpose: every part lives in its own module; this only starts them in order and stops them in
 * reverse when the shutdown signal fires.
 */
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { debugRoutes } from '../admin/debug-routes.js';
import { createRegistry, registerControlPlaneMetrics } from '../admin/metrics.js';
import {
  startAdminServer,
  type AdminRouteHandler,
  type AdminServer,
  type Readiness,
} from '../admin/server.js';
import type { ServeConfig } from '../config.js';
import { errorMessage } from '../errors.js';
import { startExtprocServer } from '../extproc/server.js';
import type { Logger } from '../log.js';
import type { EligibilityOptions } from '../model/eligibility.js';
import { EndpointStore } from '../model/store.js';
import { startFileSource } from '../sources/file.js';
import type { PodGateIndex } from '../sources/kubernetes-pods.js';
import { PolicyProblemReporter } from '../sources/policy-report.js';
import { createTlsMetrics } from '../tls/metrics.js';
import { tlsFilesFromFlags } from '../tls/material.js';
import { startTlsReloader } from '../tls/reloader.js';
import { startControlPlane } from '../xds/control-plane.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../xds/translate.js';
import { untilAborted, type CommandContext } from './context.js';
import { limitHeapGrowth } from './heap-growth.js';
import { startKubernetesSourceFromConfig } from './kubernetes.js';

interface Closable {
  readonly name: string;
  close(): Promise<void>;
}

export async function runServe(config: ServeConfig, context: CommandContext): Promise<number> {
  const { logger } = context;
  limitHeapGrowth();
  const store = new EndpointStore();
  const registry = createRegistry();
  const eligibility: EligibilityOptions = Object.freeze({
    terminatingServing: config.terminating,
    terminatingFallback: config.terminatingFallback,
  });
  // The admin server listens first, so /healthz answers and /readyz says what startup is waiting for while
  // the slow parts (a large endpoints file, the Kubernetes client and its first lists) load. The rest is
  // started in data-flow order and closed in the same order: the source stops feeding first (the store
  // keeps its last state), then xDS streams end with a status, then ext_proc; the admin server goes
  // last so /readyz and /metrics stay observable while the rest shuts down.
  const started: Closable[] = [];
  let admin: AdminServer | undefined;
  try {
    warnAboutIgnoredFlags(config, logger);
    // Checked before anything starts: a bad certificate is a config error (exit 2), not a late failure.
    const tlsFiles = tlsFilesFromFlags(config);
    const tlsMetrics = createTlsMetrics(registry);

    const tls = tlsFiles ? await startTlsReloader(tlsFiles, { logger, metrics: tlsMetrics }) : undefined;
    if (tls)
      started.push({
        name: 'TLS file watch',
        close: () => {
          tls.close();
          return Promise.resolve();
        },
      });

    // Filled in as the parts start; the admin server looks routes and readiness up per request.
    const routes: Record<string, AdminRouteHandler> = {};
    let readiness: () => Readiness = () => ({
      ready: false,
      reason: `starting: loading the source (${describeSource(config)})`,
    });
    admin = await startAdminServer({
      address: config.adminAddress.address,
      registry,
      readiness: () => readiness(),
      routes,
      logger,
    });

    const source = await startSource(config, store, logger, registry);
    started.push({ name: 'source', close: () => source.close() });

    const plane = await startControlPlane({
      store,
      xdsAddress: config.xdsAddress.address,
      http2Limits: { maxConnections: config.xdsMaxConnections },
      translate: { ...DEFAULT_TRANSLATE_OPTIONS, eligibility },
      logger,
      // Never answer from a source that has not seen the world once: an Envoy told "nothing" before the
      // first sync (an API outage during a restart) would drop every cluster it has.
      holdUntilSynced: true,
      maxStallMs: config.xdsStallTimeout,
      maxPendingBytesPerConnection: config.xdsMaxPendingPerConnection,
      maxPendingBytes: config.xdsMaxPending,
      ...(tls
        ? { tls: { reloader: tls, handshakeTimeoutMs: config.tlsHandshakeTimeout, metrics: tlsMetrics } }
        : {}),
    });
    started.push({ name: 'xDS server', close: () => plane.close() });
    registerControlPlaneMetrics(registry, {
      sync: plane.sync,
      cache: plane.cache,
      store,
      http2Limits: plane.http2Limits,
      connections: plane.connections,
    });

    // /drain-wait and /debug/gates work with any source; the gate controller needs Kubernetes.
    const { startReadiness, dnsPeers, storePods } = await import('../readiness/index.js');
    const gates = config.readinessGates && source.kubeConfig !== undefined;
    const rollouts = await startReadiness({
      cache: plane.cache,
      sync: plane.sync,
      logger,
      registry,
      ...(gates
        ? {
            kubeConfig: source.kubeConfig,
            pods: source.pods,
            gateTimeoutMs: config.gateTimeout,
            flipOnTimeout: config.gateFlipOnTimeout,
            leaseNamespace: config.leaseNamespace,
            gateMinProxies: config.gateMinProxies,
          }
        : {}),
      sourcePods: storePods(store),
      ...(config.peersDns
        ? { peers: dnsPeers({ name: config.peersDns.host, port: config.peersDns.port }) }
        : {}),
    });
    started.push({ name: 'readiness', close: () => rollouts.close() });

    // Invalid readygate.io/* annotations: log, metrics, /debug/policy and, with Kubernetes, an Event.
    const policyEvents =
      source.kubeConfig !== undefined && source.serviceUid !== undefined
        ? (await import('../sources/kubernetes-events.js')).kubernetesPolicyEvents(
            source.kubeConfig,
            source.serviceUid,
            hostname(),
          )
        : undefined;
    const policy = new PolicyProblemReporter({
      store,
      logger,
      registry,
      ...(policyEvents ? { events: policyEvents } : {}),
    });
    started.push({
      name: 'policy reports',
      close: () => {
        policy.close();
        return Promise.resolve();
      },
    });

    if (config.extproc) {
      const extproc = await startExtprocServer({
        address: config.extprocAddress.address,
        logger,
        registry,
        ...(tls ? { tls } : {}),
      });
      started.push({ name: 'ext_proc server', close: () => extproc.close() });
    }

    Object.assign(
      routes,
      debugRoutes({ sync: plane.sync, cache: plane.cache, store, eligibility }),
      rollouts.routes,
      {
        /** Services whose readygate.io/* annotations have invalid values, and what is wrong. */
        '/debug/policy': () => ({ status: 200, body: policy.toJSON() }),
      },
    );
    readiness = () => {
      const sourceReadiness = source.readiness?.() ?? { ready: true };
      if (!store.synced) {
        const why = sourceReadiness.ready ? '' : ` (${sourceReadiness.reason ?? ''})`;
        return {
          ready: false,
          reason: `waiting for the first complete view from the source; xDS requests are held until then${why}`,
        };
      }
      return sourceReadiness;
    };

    logger.info(
      { event: 'serve.started', xds: plane.address, admin: admin.address, source: describeSource(config) },
      `readygate serving xDS on ${plane.address}, admin on ${admin.address}`,
    );
    await untilAborted(context.shutdown);
    logger.info({ event: 'serve.stopping' }, 'shutting down');
  } finally {
    const adminServer = admin;
    if (adminServer) started.push({ name: 'admin server', close: () => adminServer.close() });
    await closeInOrder(started, logger);
  }
  logger.info({ event: 'serve.stopped' }, 'stopped');
  return 0;
}

async function startSource(
  config: ServeConfig,
  store: EndpointStore,
  logger: Logger,
  registry: Registry,
): Promise<{
  close(): Promise<void>;
  kubeConfig?: KubeConfig;
  pods?: PodGateIndex | undefined;
  readiness?: () => Readiness;
  serviceUid?: (key: string) => string | undefined;
}> {
  if (config.source.kind === 'file') {
    if (config.readinessGates) {
      logger.warn(
        { event: 'serve.readiness-gates-ignored' },
        '--readiness-gates needs --source kubernetes; ignored',
      );
    }
    return startFileSource({
      path: config.source.path,
      store,
      logger,
      registry,
      maxBytes: config.sourceFileMaxSize,
    });
  }
  return startKubernetesSourceFromConfig({
    store,
    logger,
    registry,
    kubeconfig: config.kubeconfig,
    namespaces: config.namespaces,
    serviceSelector: config.serviceSelector,
    readinessGates: config.readinessGates,
    timeouts: {
      responseMs: config.kubernetesRequestTimeout,
      listMs: config.kubernetesListTimeout,
      silenceMs: config.kubernetesWatchSilence,
    },
  });
}

/**
 * Kubernetes-only settings next to a file source are not an error (a shared config file or env may set
 * them for other deployments), but silently ignoring them would hide a mistake.
 */
function warnAboutIgnoredFlags(config: ServeConfig, logger: Logger): void {
  if (config.source.kind !== 'file') return;
  const ignored = [
    config.kubeconfig !== undefined ? '--kubeconfig' : undefined,
    config.namespaces.length > 0 ? '--namespace' : undefined,
    config.serviceSelector !== undefined ? '--service-selector' : undefined,
  ].filter((flag) => flag !== undefined);
  if (ignored.length > 0) {
    logger.warn(
      { event: 'serve.flags-ignored', flags: ignored },
      `${ignored.join(', ')} only apply to --source kubernetes and are ignored with a file source`,
    );
  }
}

function describeSource(config: ServeConfig): string {
  return config.source.kind === 'file' ? `file:${config.source.path}` : 'kubernetes';
}

/** Closes everything even if one part fails, so a stuck part cannot leak the others' ports. */
async function closeInOrder(started: readonly Closable[], logger: Logger): Promise<void> {
  for (const part of started) {
    try {
      await part.close();
    } catch (error) {
      logger.error(
        { event: 'serve.close-failed', part: part.name },
        `closing the ${part.name} failed: ${errorMessage(error)}`,
      );
    }
  }
}
