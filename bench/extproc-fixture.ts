/**
 * The topology the ext_proc integration tests prove and the benchmark measures: purpose-built upstreams on
 * 127.0.0.x, readygate's ext_proc server, and a real Envoy from envoy/extproc-failures.template.yaml.
 * Shared so the numbers in bench/results/extproc.json describe exactly the configuration the tests verify.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { EXTPROC_RESPONSE_ATTRIBUTES } from '../src/extproc/attributes.js';
import { startExtprocServer, type ExtprocServer } from '../src/extproc/server.js';
import { loadBootstrapTemplate, startEnvoy, type EnvoyProcess } from '../test/helpers/envoy-process.js';
import { freePort } from '../test/helpers/ports.js';
import {
  acceptThenCloseUpstream,
  garbageUpstream,
  http2ResetUpstream,
  okUpstream,
  partialResponseUpstream,
  refusingUpstream,
  silentUpstream,
  statusUpstream,
  type Upstream,
} from '../test/helpers/upstreams.js';

export const TEMPLATE = 'envoy/extproc-failures.template.yaml';
export const EXTPROC_FILTER_NAME = 'readygate.ext_proc_5xx';
/** Envoy's ext_proc stats for the template's listener. */
export const EXTPROC_STAT_PREFIX = 'http.ingress.ext_proc.';

/** Bodies the upstreams answer with, so tests can assert they arrive byte for byte. */
export const APP_ERROR_BODY = 'app says no: order 42 is invalid';
export const TERMINATING_BODY = 'server is shutting down';

export interface TopologyOptions {
  /** Start readygate's ext_proc server (default true). */
  extproc?: boolean;
  /** With `extproc: false`, send ext_proc streams to this port (e.g. a test's misbehaving server). */
  extprocPort?: number;
  /** Keep the ext_proc filter in Envoy's chain (default true). */
  extprocFilter?: boolean;
  /**
   * Override the ext_proc `message_timeout` (default: the template's 0.2 s). Tests that assert on mapped
   * bodies raise it so a CPU-starved CI machine cannot turn a slow answer into a pass-through.
   */
  messageTimeout?: string;
  /** Keep the HCM's local_reply_config mappers (default true). */
  localReplyConfig?: boolean;
  /** Override runtime keys of the template's static layer. */
  runtime?: Record<string, boolean>;
  debug?: boolean;
  /** Log level of the ext_proc server's captured logger (default 'debug': pass-throughs are logged too). */
  logLevel?: string;
  /** Upstreams run elsewhere (e.g. a child process), by fixture name; the rest start in this process. */
  upstreams?: Readonly<Record<string, { host: string; port: number }>>;
  /** Keep parsed log lines in `logs` (default true); false still serializes them, as production would. */
  captureLogs?: boolean;
}

export interface Topology {
  readonly envoy: EnvoyProcess;
  /** undefined when started without ext_proc, or after stopExtproc(). */
  extproc: ExtprocServer | undefined;
  readonly registry: Registry;
  /** `http://127.0.0.1:<listener port>`. */
  readonly baseUrl: string;
  readonly upstreams: Readonly<Record<string, Upstream>>;
  /** Every log line the ext_proc server wrote, parsed. */
  readonly logs: Record<string, unknown>[];
  /** One ext_proc stat (name after `http.ingress.ext_proc.`), 0 if absent. */
  readonly extprocStat: (name: string) => Promise<number>;
  stopExtproc(): Promise<void>;
  close(): Promise<void>;
}

type Mutable = Record<string, unknown>;

function connectionManager(bootstrap: Mutable): Mutable {
  const resources = bootstrap['static_resources'] as { listeners: Mutable[] };
  const listener = resources.listeners[0] as { filter_chains: { filters: { typed_config: Mutable }[] }[] };
  return listener.filter_chains[0]!.filters[0]!.typed_config;
}

export async function startTopology(options: TopologyOptions = {}): Promise<Topology> {
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.reverse()) {
      await close().catch(() => undefined);
    }
    closers.length = 0;
  };
  try {
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (options.captureLogs === false) {
          callback();
          return;
        }
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
        }
        callback();
      },
    });
    const logger = pino({ level: options.logLevel ?? 'debug', base: null }, sink);
    const registry = new Registry();
    const upstreams: Record<string, Upstream> = {};
    const add = async (name: string, start: () => Promise<Upstream>): Promise<Upstream> => {
      const external = options.upstreams?.[name];
      if (external !== undefined) {
        const address = `${external.host}:${external.port}`;
        const upstream: Upstream = { ...external, address, hits: () => 0, close: () => Promise.resolve() };
        upstreams[name] = upstream;
        return upstream;
      }
      const upstream = await start();
      upstreams[name] = upstream;
      closers.push(() => upstream.close());
      return upstream;
    };
    const ok = await add('ok', () => okUpstream({ host: '127.0.0.2' }));
    const appError = await add('appError', () => statusUpstream(500, APP_ERROR_BODY, { host: '127.0.0.3' }));
    const terminating = await add('terminating', () =>
      statusUpstream(500, TERMINATING_BODY, { host: '127.0.0.4' }),
    );
    const refused = await add('refused', () => refusingUpstream({ host: '127.0.0.5' }));
    const close = await add('close', () => acceptThenCloseUpstream({ host: '127.0.0.6' }));
    const garbage = await add('garbage', () => garbageUpstream({ host: '127.0.0.7' }));
    const silent = await add('silent', () => silentUpstream({ host: '127.0.0.8' }));
    const h2Reset = await add('h2Reset', () => http2ResetUpstream({ host: '127.0.0.9' }));
    const resetAfter = await add('resetAfter', () => partialResponseUpstream(500, { host: '127.0.0.10' }));

    let extproc: ExtprocServer | undefined;
    let extprocPort: number;
    if (options.extproc ?? true) {
      extproc = await startExtprocServer({
        address: '127.0.0.1:0',
        debug: options.debug ?? false,
        logger,
        registry,
      });
      extprocPort = extproc.port;
      const started = extproc;
      closers.push(() => started.close());
    } else {
      // Unless a test brings its own server, nothing listens there: the ext_proc stream fails to connect.
      extprocPort = options.extprocPort ?? (await freePort());
    }
    const listenerPort = await freePort();
    const bootstrap = loadBootstrapTemplate(TEMPLATE, {
      ADMIN_PORT: 0,
      LISTENER_PORT: listenerPort,
      EXTPROC_HOST: '127.0.0.1',
      EXTPROC_PORT: extprocPort,
      EXTPROC_RESPONSE_ATTRIBUTES,
      OK_HOST: ok.host,
      OK_PORT: ok.port,
      APP_ERROR_HOST: appError.host,
      APP_ERROR_PORT: appError.port,
      TERMINATING_HOST: terminating.host,
      TERMINATING_PORT: terminating.port,
      REFUSED_HOST: refused.host,
      REFUSED_PORT: refused.port,
      CLOSE_HOST: close.host,
      CLOSE_PORT: close.port,
      GARBAGE_HOST: garbage.host,
      GARBAGE_PORT: garbage.port,
      SILENT_HOST: silent.host,
      SILENT_PORT: silent.port,
      H2_RESET_HOST: h2Reset.host,
      H2_RESET_PORT: h2Reset.port,
      RESET_AFTER_HOST: resetAfter.host,
      RESET_AFTER_PORT: resetAfter.port,
    });
    if (options.runtime !== undefined) {
      const layers = (bootstrap['layered_runtime'] as { layers: { static_layer: Mutable }[] }).layers;
      Object.assign(layers[0]!.static_layer, options.runtime);
    }
    if (options.extprocFilter === false) {
      const filters = connectionManager(bootstrap)['http_filters'] as Mutable[];
      const index = filters.findIndex((filter) => filter['name'] === EXTPROC_FILTER_NAME);
      filters.splice(index, 1);
    }
    if (options.localReplyConfig === false) delete connectionManager(bootstrap)['local_reply_config'];
    if (options.messageTimeout !== undefined) {
      const filters = connectionManager(bootstrap)['http_filters'] as Mutable[];
      const wrapper = filters.find((filter) => filter['name'] === EXTPROC_FILTER_NAME);
      const config = wrapper?.['typed_config'] as { extension_config: { typed_config: Mutable } } | undefined;
      if (config === undefined) throw new Error('template has no ext_proc filter to set message_timeout on');
      config.extension_config.typed_config['message_timeout'] = options.messageTimeout;
    }
    const envoy = await startEnvoy({ bootstrap });
    closers.push(() => envoy.stop());
    const topology: Topology = {
      envoy,
      extproc,
      registry,
      baseUrl: `http://127.0.0.1:${listenerPort}`,
      upstreams,
      logs,
      extprocStat: async (name) => (await envoy.stat(`${EXTPROC_STAT_PREFIX}${name}`)) ?? 0,
      stopExtproc: async () => {
        await topology.extproc?.close();
        topology.extproc = undefined;
      },
      close: async () => {
        await topology.stopExtproc();
        await closeAll();
      },
    };
    return topology;
  } catch (error) {
    await closeAll();
    throw error;
  }
}
