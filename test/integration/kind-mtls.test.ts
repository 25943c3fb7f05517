/**
 * The kind demo's mTLS, run for real on loopback (kind-manifests.test.ts only reads the wiring): the
 * certificates kind/scripts/certs.sh issues, laid out as the pods mount their Secrets; `readygate serve`
 * and the `readygate extproc` sidecar (bin/readygate.js runs dist/: `npm run build` first) with the args
 * the rendered Deployments give them; the pinned Envoy with the gateway bootstrap from the envoy-bootstrap
 * ConfigMap and the Envoy container's args. Only what cannot be the same on loopback is rewritten, each
 * rewrite named below: in-cluster addresses become 127.0.0.1 ports, mount paths become temp dirs, and the
 * Kubernetes source becomes a file source holding the demo's Service (demo/web, port `http`) with one
 * endpoint, a backend this test starts. SNI, ALPN, SAN matchers, certificates and TLS flags are the demo's.
 * (`--readiness-gates` stays in serve's args; with a file source readygate ignores it, as it logs.)
 *
 * Asserted: Envoy's ADS stream is up over mTLS, readygate's /debug/syncz names it with the
 * envoy-gateway certificate's identity and shows its cluster and endpoints ACKed; a request through the
 * listener gets the backend's 200 (a 2xx never goes to ext_proc: the bootstrap's 5xx matcher); over
 * mTLS the ext_proc sidecar passes the app's own 500 unchanged and maps the stopped backend's connect
 * failure into readygate's 503 problem+json, and logs that request's mapping; a certificate from another
 * CA, with the same identity, is refused in the handshake by readygate's xDS port (counted in
 * readygate_tls_handshake_failures_total) and by the sidecar, and an Envoy holding it never gets a stream.
 */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import anyTest, { type TestFn } from 'ava';
import { parse as parseYaml } from 'yaml';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';
import { supervise, type SupervisedProcess } from '../../src/supervised-process.js';
import { peerIdentity } from '../../src/tls/identity.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import type { SynczEntry } from '../../src/xds/sync-status.js';
import { startEnvoy, startOrphanWatchdog, waitUntil, type EnvoyProcess } from '../helpers/envoy-process.js';
import { valueAt, type Json } from '../helpers/gateway-bootstrap.js';
import {
  findObject,
  renderKind,
  runKindCerts,
  writeSecretVolume,
  type KindSecret,
  type RenderedObject,
} from '../helpers/kind-demo.js';
import { freePort } from '../helpers/ports.js';
import { createTestPki, type CertFiles } from '../helpers/tls-certs.js';
import { httpUpstream, type Upstream } from '../helpers/upstreams.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** What certs.sh puts into the envoy-gateway certificate, and so what readygate must show. */
const ENVOY_IDENTITY = 'spiffe://readygate-demo/ns/gateway/envoy';
/** The Envoy pod's name here: its node id (--service-node $(POD_NAME)). */
const ENVOY_POD = 'envoy-5d8f7c9b6-kind0';

// --- The manifests, as the kubelet would run them -----------------------------------------------------

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}
interface Container {
  name: string;
  image?: string;
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: {
    name: string;
    secret?: { secretName: string; defaultMode?: number };
    configMap?: { name: string };
  }[];
}
interface Pod {
  readonly name: string;
  readonly namespace: string;
  readonly spec: PodSpec;
}

function podOf(objects: readonly RenderedObject[], deployment: string, podName: string): Pod {
  const object = findObject(objects, 'Deployment', deployment);
  return {
    name: podName,
    namespace: object.metadata.namespace ?? 'default',
    spec: (object.spec as { template: { spec: PodSpec } }).template.spec,
  };
}

function containerOf(pod: Pod, name: string): Container {
  const found = [...pod.spec.containers, ...(pod.spec.initContainers ?? [])].find((c) => c.name === name);
  if (!found) throw new Error(`pod ${pod.name} has no container ${name}`);
  return found;
}

/** The container's environment as the kubelet sets it (values and the pod's own name and namespace). */
function containerEnv(pod: Pod, container: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const field = variable.valueFrom?.fieldRef?.fieldPath;
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (field === 'metadata.name') env[variable.name] = pod.name;
    else if (field === 'metadata.namespace') env[variable.name] = pod.namespace;
    else throw new Error(`${container.name}: env ${variable.name} comes from something this test cannot set`);
  }
  return env;
}

/** Kubernetes' $(VAR) expansion of args from the container's environment. */
function expandArgs(args: readonly string[], env: Readonly<Record<string, string>>): string[] {
  return args.map((arg) =>
    arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (ref, name: string) => env[name] ?? ref),
  );
}

/**
 * Writes each Secret the container mounts into a directory of its own (the Secret's files with the
 * volume's defaultMode), as the kubelet does; returns mount path → directory. A Secret that certs.sh
 * does not make in the pod's namespace is an error: the pod would not start.
 */
function mountSecrets(
  pod: Pod,
  container: Container,
  secrets: readonly KindSecret[],
  root: string,
): Map<string, string> {
  const mounts = new Map<string, string>();
  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.spec.volumes?.find((v) => v.name === mount.name);
    if (volume?.secret === undefined) continue;
    const { secretName, defaultMode } = volume.secret;
    const secret = secrets.find((s) => s.name === secretName && s.namespace === pod.namespace);
    if (!secret)
      throw new Error(`certs.sh makes no Secret ${pod.namespace}/${secretName} (${container.name})`);
    const dir = path.join(root, `${pod.name}.${container.name}.${volume.name}`);
    mounts.set(mount.mountPath, writeSecretVolume(secret, dir, defaultMode ?? 0o644));
  }
  return mounts;
}

/** One argument the test replaces, and why it cannot stay as the manifest has it. */
interface ArgRewrite {
  readonly from: string;
  readonly to: string;
  readonly why: string;
}

/**
 * The container's args with each named rewrite applied (each must match exactly one argument: a manifest
 * edit that a rewrite no longer matches fails here, not somewhere obscure) and each mount path replaced
 * by its directory. Everything else is passed as the manifest has it.
 */
function rewriteArgs(
  args: readonly string[],
  rewrites: readonly ArgRewrite[],
  mounts: ReadonlyMap<string, string>,
): string[] {
  for (const rewrite of rewrites) {
    const matches = args.filter((arg) => arg === rewrite.from).length;
    if (matches !== 1) throw new Error(`${rewrite.why}: ${matches} args are ${rewrite.from}, not 1`);
  }
  return args.map((arg) => {
    const rewrite = rewrites.find((r) => r.from === arg);
    if (rewrite) return rewrite.to;
    let result = arg;
    for (const [mountPath, dir] of mounts) result = result.replaceAll(`${mountPath}/`, `${dir}/`);
    return result;
  });
}

/** `args` without `flag` and its value; the value is returned too. */
function takeOption(args: readonly string[], flag: string): [string, string[]] {
  const at = args.indexOf(flag);
  const value = args[at + 1];
  if (at < 0 || value === undefined) throw new Error(`the Envoy container's args have no ${flag} VALUE`);
  return [value, [...args.slice(0, at), ...args.slice(at + 2)]];
}

// --- The Envoy bootstrap --------------------------------------------------------------------------------

type Key = string | number;

/** One place in the bootstrap the test replaces, and why. */
interface BootstrapRewrite {
  readonly why: string;
  readonly at: readonly Key[];
  readonly value: unknown;
}

function setAt(node: unknown, at: readonly Key[], value: unknown): void {
  const parent = valueAt(node, ...at.slice(0, -1)) as Record<Key, unknown> | undefined;
  const last = at[at.length - 1];
  if (parent === undefined || last === undefined || !(last in parent))
    throw new Error(`the bootstrap has nothing at ${at.join('.')}`);
  parent[last] = value;
}

/** Every leaf where `a` and `b` differ, as dotted paths. */
function changedLeaves(a: unknown, b: unknown, at: readonly Key[] = []): string[] {
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((key) =>
      changedLeaves((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], [...at, key]),
    );
  }
  return a === b ? [] : [at.join('.')];
}

/** Replaces `from/` at the start of every string in the tree with `to/`; returns the paths it changed. */
function replacePathPrefix(node: unknown, from: string, to: string, at: readonly Key[] = []): string[] {
  if (typeof node !== 'object' || node === null) return [];
  const changed: string[] = [];
  for (const [key, value] of Object.entries(node)) {
    if (typeof value === 'string' && value.startsWith(`${from}/`)) {
      (node as Record<string, unknown>)[key] = `${to}/${value.slice(from.length + 1)}`;
      changed.push([...at, key].join('.'));
    } else changed.push(...replacePathPrefix(value, from, to, [...at, key]));
  }
  return changed;
}

interface GatewayBootstrap {
  readonly original: Json;
  readonly rewritten: Json;
  /** Every leaf a named rewrite is allowed to change. */
  readonly allowed: readonly string[];
}

/**
 * The ConfigMap's bootstrap with what loopback needs, each rewrite named; TLS files point into `tlsDir`
 * (the envoy-gateway-tls Secret's mount, /etc/envoy-tls in the pod).
 */
function gatewayBootstrap(
  text: string,
  tlsMount: { readonly mountPath: string; readonly dir: string },
  ports: { readonly xds: number; readonly extproc: number; readonly listener: number },
): GatewayBootstrap {
  const original = parseYaml(text) as Json;
  const rewritten = parseYaml(text) as Json;
  const clusters = valueAt(rewritten, 'static_resources', 'clusters') as Json[];
  const clusterAt = (name: string): number => {
    const index = clusters.findIndex((c) => c['name'] === name);
    if (index < 0) throw new Error(`the bootstrap has no cluster ${name}`);
    return index;
  };
  const endpointOf = (name: string): Key[] => [
    'static_resources',
    'clusters',
    clusterAt(name),
    ...['load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address'],
  ];
  const loopback = (port: number): Json => ({ address: '127.0.0.1', port_value: port });
  const rewrites: BootstrapRewrite[] = [
    {
      why: "Envoy's admin: on loopback, any port (startEnvoy reads it from --admin-address-path)",
      at: ['admin', 'address', 'socket_address'],
      value: loopback(0),
    },
    {
      why: 'readygate_xds: readygate serve on loopback instead of the readygate Service',
      at: endpointOf('readygate_xds'),
      value: loopback(ports.xds),
    },
    {
      why: "readygate_extproc: the sidecar's port (the pod's loopback is shared here)",
      at: endpointOf('readygate_extproc'),
      value: loopback(ports.extproc),
    },
    {
      why: 'the ingress listener: on loopback, a free port instead of the pod IP:8080',
      at: ['static_resources', 'listeners', 0, 'address', 'socket_address'],
      value: loopback(ports.listener),
    },
  ];
  const allowed: string[] = [];
  for (const rewrite of rewrites) {
    const changed = changedLeaves(valueAt(original, ...rewrite.at), rewrite.value, rewrite.at);
    if (changed.length === 0) throw new Error(`${rewrite.why}: nothing to change at ${rewrite.at.join('.')}`);
    allowed.push(...changed);
    setAt(rewritten, rewrite.at, rewrite.value);
  }
  const tlsFiles = replacePathPrefix(rewritten, tlsMount.mountPath, tlsMount.dir);
  if (tlsFiles.length === 0) throw new Error(`the bootstrap reads nothing from ${tlsMount.mountPath}`);
  allowed.push(...tlsFiles);
  return { original, rewritten, allowed };
}

// --- readygate processes ---------------------------------------------------------------------------------

type LogLine = Record<string, unknown>;

interface Cli {
  readonly lines: LogLine[];
  readonly process: SupervisedProcess;
  /** The first log line `match` accepts, waited for (bounded); throws if the process exits first. */
  line(match: (line: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
}

/** `readygate ARGS` as the image's entrypoint runs it, with the container's environment. */
function startCli(args: readonly string[], env: Readonly<Record<string, string>>): Cli {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'readygate.js'), ...args], {
    cwd: repoRoot,
    // The image sets NODE_ENV=production (Dockerfile); the rest is the container's env.
    env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid !== undefined) startOrphanWatchdog(child.pid);
  const supervised = supervise(child, { maxLogLines: 400 });
  const lines: LogLine[] = [];
  const decoder = new StringDecoder('utf8');
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    partial += decoder.write(chunk);
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    for (const text of complete) {
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        // not a log line
      }
    }
  });
  return {
    lines,
    process: supervised,
    line: (match, what, timeoutMs = 15_000) =>
      waitUntil(
        () => {
          const found = lines.find(match);
          if (found) return found;
          if (supervised.hasExited())
            throw new Error(`readygate ${args[0] ?? ''} exited:\n${supervised.logTail(40)}`);
          return undefined;
        },
        { timeoutMs, description: `readygate ${args[0] ?? ''}: ${what}` },
      ),
  };
}

// --- What the test holds --------------------------------------------------------------------------------

interface Context {
  workDir: string;
  /** The envoy-gateway-tls Secret: where the pod mounts it, where it is here. */
  gatewayTls: { mountPath: string; dir: string };
  backend: Upstream;
  serve: Cli;
  adminUrl: string;
  xdsPort: number;
  sidecar: Cli;
  extprocPort: number;
  envoy: EnvoyProcess;
  envoyImage: string;
  /** The Envoy container's args, as startEnvoy gets them (-c and --concurrency are its own). */
  envoyArgs: string[];
  listenerUrl: string;
  bootstrap: GatewayBootstrap;
  /** The cluster the gateway's route names. */
  routeCluster: string;
  /** The demo Service's cluster name, from its manifest. */
  serviceCluster: string;
  /** A client certificate with the envoy-gateway identity, from another CA. */
  stranger: CertFiles;
  envoyGateway: CertFiles;
  caFile: string;
}
const test = anyTest as TestFn<Context>;

/** Stops what the before hook started, last first; run also when the hook failed half-way. */
const cleanups: (() => Promise<void> | void)[] = [];

test.before(async (t) => {
  const context = t.context as Partial<Context>;
  const workDir = mkdtempSync(path.join(tmpdir(), 'readygate-kind-mtls-'));
  cleanups.push(() => {
    rmSync(workDir, { recursive: true, force: true });
  });
  context.workDir = workDir;
  const objects = await renderKind('base');
  const { secrets } = await runKindCerts(path.join(workDir, 'certs'));
  const mountRoot = path.join(workDir, 'mounts');
  mkdirSync(mountRoot);

  // The demo's Service, with one endpoint: a backend on loopback that answers like the demo app.
  const backend = await httpUpstream((request, _body, response) => {
    const status = request.url === '/app-error' ? 500 : 200;
    response.writeHead(status, { 'content-type': 'text/plain', 'x-pod': 'web-0' });
    response.end(status === 200 ? 'web-0\n' : 'the application failed\n');
  });
  cleanups.push(() => backend.close());
  context.backend = backend;
  const web = findObject(objects, 'Service', 'web');
  const webPort = (web.spec as { ports: { name: string }[] }).ports[0]!.name;
  const webNamespace = web.metadata.namespace ?? 'default';
  context.serviceCluster = `${webNamespace}/${web.metadata.name}:${webPort}`;
  const endpointsFile = path.join(workDir, 'endpoints.yaml');
  writeFileSync(
    endpointsFile,
    [
      'services:',
      `- namespace: ${webNamespace}`,
      `  name: ${web.metadata.name}`,
      `  ports: [{name: ${webPort}, port: ${backend.port}}]`,
      '  endpoints:',
      `  - addresses: ["${backend.host}"]`,
      `    targetRef: {kind: Pod, name: web-0, namespace: ${webNamespace}}`,
      '',
    ].join('\n'),
  );

  // readygate serve, as the readygate Deployment runs it.
  const readygatePod = podOf(objects, 'readygate', 'readygate-7b9c4d8f5-kind0');
  const control = containerOf(readygatePod, 'readygate');
  const adminPort = await freePort();
  const serveArgs = rewriteArgs(
    control.args ?? [],
    [
      {
        from: '--source=kubernetes',
        to: `--source=file:${endpointsFile}`,
        why: 'no Kubernetes API here: the file source holds the demo Service',
      },
      {
        from: '--xds-address=0.0.0.0:18000',
        to: '--xds-address=127.0.0.1:0',
        why: 'xDS on loopback, any port (from the serve.started line)',
      },
      {
        from: '--admin-address=0.0.0.0:9102',
        to: `--admin-address=127.0.0.1:${adminPort}`,
        why: 'admin on loopback',
      },
      {
        from: '--peers-dns=readygate-peers.readygate.svc.cluster.local:9102',
        to: `--peers-dns=localhost:${adminPort}`,
        why: 'one replica: the peer name resolves to this one, which readygate leaves out as itself',
      },
    ],
    mountSecrets(readygatePod, control, secrets, mountRoot),
  );
  const serve = startCli(serveArgs, containerEnv(readygatePod, control));
  cleanups.push(() => serve.process.stop());
  context.serve = serve;
  const started = await serve.line((l) => l['event'] === 'serve.started', 'serve.started');
  context.adminUrl = `http://${String(started['admin'])}`;
  context.xdsPort = Number(/:(\d+)$/.exec(String(started['xds']))?.[1]);

  // The ext_proc native sidecar of the gateway pod.
  const gatewayPod = podOf(objects, 'envoy', ENVOY_POD);
  const extproc = containerOf(gatewayPod, 'extproc');
  const sidecar = startCli(
    rewriteArgs(
      extproc.args ?? [],
      [
        {
          from: '--address=127.0.0.1:18001',
          to: '--address=127.0.0.1:0',
          why: "any free port: this machine's loopback is not the pod's",
        },
      ],
      mountSecrets(gatewayPod, extproc, secrets, mountRoot),
    ),
    containerEnv(gatewayPod, extproc),
  );
  cleanups.push(() => sidecar.process.stop());
  context.sidecar = sidecar;
  const extprocStarted = await sidecar.line((l) => l['event'] === 'extproc.started', 'extproc.started');
  context.extprocPort = Number(/:(\d+)$/.exec(String(extprocStarted['address']))?.[1]);

  // The Envoy container: its bootstrap from the ConfigMap it mounts, its args.
  const envoyContainer = containerOf(gatewayPod, 'envoy');
  context.envoyImage = envoyContainer.image ?? '';
  const envoyEnv = containerEnv(gatewayPod, envoyContainer);
  const [configPath, withoutConfig] = takeOption(expandArgs(envoyContainer.args ?? [], envoyEnv), '-c');
  // startEnvoy passes -c (the rewritten bootstrap) and --concurrency 1 (a small, shared machine).
  const [, envoyArgs] = takeOption(withoutConfig, '--concurrency');
  context.envoyArgs = envoyArgs;
  const configMount = envoyContainer.volumeMounts?.find((m) => m.mountPath === path.dirname(configPath));
  const configMapName = gatewayPod.spec.volumes?.find((v) => v.name === configMount?.name)?.configMap?.name;
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === configMapName);
  const text = configMap?.data?.[path.basename(configPath)];
  if (text === undefined)
    throw new Error(`no ConfigMap key for ${configPath} (${configMapName ?? 'no volume'})`);
  const envoyMounts = mountSecrets(gatewayPod, envoyContainer, secrets, mountRoot);
  const [tlsMount] = [...envoyMounts].map(([mountPath, dir]) => ({ mountPath, dir }));
  if (envoyMounts.size !== 1 || tlsMount === undefined)
    throw new Error('the Envoy container mounts one Secret');
  context.gatewayTls = tlsMount;
  const listenerPort = await freePort();
  const bootstrap = gatewayBootstrap(text, tlsMount, {
    xds: context.xdsPort,
    extproc: context.extprocPort,
    listener: listenerPort,
  });
  context.bootstrap = bootstrap;
  const routes = valueAt(
    bootstrap.rewritten,
    ...['static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config'],
    ...['route_config', 'virtual_hosts', 0, 'routes'],
  ) as { route: { cluster: string } }[];
  context.routeCluster = routes[0]!.route.cluster;
  context.listenerUrl = `http://127.0.0.1:${listenerPort}`;
  const envoy = await startEnvoy({
    bootstrap: bootstrap.rewritten,
    extraArgs: envoyArgs,
    readyTimeoutMs: 20_000,
  });
  cleanups.push(() => envoy.stop());
  context.envoy = envoy;

  // For the negative: the same identity, issued by another CA.
  const pki = createTestPki();
  cleanups.push(() => {
    pki.remove();
  });
  const otherCa = pki.ca('other-ca');
  context.stranger = pki.issue(otherCa, 'envoy-gateway', {
    cn: 'envoy-gateway',
    uris: [ENVOY_IDENTITY],
    usage: 'clientAuth',
  });
  context.envoyGateway = {
    certFile: path.join(tlsMount.dir, 'tls.crt'),
    keyFile: path.join(tlsMount.dir, 'tls.key'),
  };
  context.caFile = path.join(tlsMount.dir, 'ca.crt');
});

test.after.always(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

// --- Reading readygate ------------------------------------------------------------------------------------

async function syncz(adminUrl: string): Promise<SynczEntry[]> {
  const response = await fetch(`${adminUrl}/debug/syncz?resources=true`, {
    signal: AbortSignal.timeout(5000),
  });
  return (await response.json()) as SynczEntry[];
}

/** readygate_tls_handshake_failures_total by `listener/reason`. */
async function handshakeFailures(adminUrl: string): Promise<Record<string, number>> {
  const response = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  const counts: Record<string, number> = {};
  for (const match of (await response.text()).matchAll(
    /^readygate_tls_handshake_failures_total\{listener="(\w+)",reason="(\w+)"\} (\d+)$/gm,
  ))
    counts[`${match[1] ?? ''}/${match[2] ?? ''}`] = Number(match[3]);
  return counts;
}

interface ProbeResult {
  /** Bytes of HTTP/2 the server sent after the connection preface (its SETTINGS, when it accepted us). */
  readonly bytes: number;
  readonly localPort: number | undefined;
}

/**
 * A TLS client as Envoy's clusters are (SNI `servername`, ALPN h2, the demo CA, a client certificate):
 * it sends the HTTP/2 connection preface and reports what the server answered before it closed the
 * connection or 3 s passed. An accepted client gets the server's SETTINGS; a refused one gets nothing.
 */
function h2Probe(port: number, servername: string, ca: string, client: CertFiles): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let bytes = 0;
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      ALPNProtocols: ['h2'],
      ca: readFileSync(ca),
      cert: readFileSync(client.certFile),
      key: readFileSync(client.keyFile),
    });
    let localPort: number | undefined;
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ bytes, localPort });
    };
    const timer = setTimeout(finish, 3000);
    socket.once('connect', () => {
      localPort = socket.localPort;
    });
    // With TLS 1.3 the client's handshake ends before the server has checked its certificate.
    socket.once('secureConnect', () => {
      // The client preface and an empty SETTINGS frame.
      const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
      socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), settings]));
    });
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      finish();
    });
    socket.on('error', () => {
      // A refusal: the alert or the reset shows as an error, then close.
    });
    socket.once('close', finish);
  });
}

// --- The tests ----------------------------------------------------------------------------------------------

test.serial(
  "only loopback and the named rewrites differ from the demo: TLS is exactly the ConfigMap's",
  (t) => {
    const { bootstrap, gatewayTls } = t.context;
    t.deepEqual(changedLeaves(bootstrap.original, bootstrap.rewritten).sort(), [...bootstrap.allowed].sort());
    // Each gRPC cluster's TLS, with the mount path put back, is the ConfigMap's to the byte.
    const clusters = (b: Json): Json[] => valueAt(b, 'static_resources', 'clusters') as Json[];
    const restored = JSON.parse(
      JSON.stringify(clusters(bootstrap.rewritten)).replaceAll(
        `${gatewayTls.dir}/`,
        `${gatewayTls.mountPath}/`,
      ),
    ) as Json[];
    for (const name of ['readygate_xds', 'readygate_extproc']) {
      const original = clusters(bootstrap.original).find((c) => c['name'] === name);
      const ours = restored.find((c) => c['name'] === name);
      t.truthy(original?.['transport_socket'], name);
      t.deepEqual(ours?.['transport_socket'], original?.['transport_socket'], name);
    }
  },
);

test.serial(
  "Envoy's ADS stream is mTLS: syncz names the envoy-gateway certificate and shows its clusters ACKed",
  async (t) => {
    const { adminUrl, envoy, serviceCluster, routeCluster, envoyImage, gatewayTls } = t.context;
    t.is(routeCluster, serviceCluster, "the gateway's route names the demo Service's cluster");
    const entry = await waitUntil(
      async () => {
        const found = (await syncz(adminUrl)).find((e) => e.nodeId === ENVOY_POD);
        const cds = found?.types[TypeUrl.CLUSTER];
        const eds = found?.types[TypeUrl.ENDPOINT];
        return cds?.status === 'SYNCED' && eds?.status === 'SYNCED' ? found : undefined;
      },
      { timeoutMs: 10_000, description: `${ENVOY_POD} SYNCED for CDS and EDS in /debug/syncz` },
    );
    const all = await syncz(adminUrl);
    t.deepEqual(
      all.map((e) => e.nodeId),
      [ENVOY_POD],
    );
    // The identity is the URI SAN of the certificate certs.sh put into envoy-gateway-tls.
    const certificate = new X509Certificate(readFileSync(path.join(gatewayTls.dir, 'tls.crt')));
    t.is(peerIdentity({ subjectaltname: certificate.subjectAltName }), ENVOY_IDENTITY);
    t.is(entry.identity, ENVOY_IDENTITY);
    t.is(entry.nodeCluster, 'readygate-gateway');
    t.regex(entry.peer, /^127\.0\.0\.1:\d+$/);
    t.is(entry.stream, 'sotw');
    // The pinned Envoy that ran this is the version the demo's image tag names.
    t.is(entry.userAgent, `envoy/${/:v([\d.]+)$/.exec(envoyImage)?.[1] ?? '?'}`);
    for (const typeUrl of [TypeUrl.CLUSTER, TypeUrl.ENDPOINT]) {
      const type = entry.types[typeUrl]!;
      t.is(type.status, 'SYNCED', typeUrl);
      t.is(type.acked?.version, type.sent?.version, typeUrl);
      t.is(type.acked?.nonce, type.sent?.nonce, typeUrl);
      t.deepEqual(Object.keys(type.ackedResources ?? {}), [serviceCluster], typeUrl);
    }
    t.is(await envoy.stat('control_plane.connected_state'), 1);
    t.true((await envoy.stat('cluster.readygate_xds.ssl.handshake'))! >= 1);
    t.is(await envoy.stat('cluster.readygate_xds.ssl.connection_error'), 0);
    // Nothing refused so far: Envoy's ALPN, SNI and certificate were all accepted.
    t.deepEqual(await handshakeFailures(adminUrl), {});
  },
);

test.serial("a request through the gateway's listener gets the backend's 200", async (t) => {
  const { listenerUrl, backend } = t.context;
  const hits = backend.hits();
  const response = await fetch(`${listenerUrl}/hello`, { signal: AbortSignal.timeout(5000) });
  t.is(response.status, 200);
  t.is(await response.text(), 'web-0\n');
  t.is(response.headers.get('x-pod'), 'web-0');
  t.is(response.headers.get(CAUSE_HEADER), null);
  t.is(backend.hits(), hits + 1);
});

/** Envoy's ext_proc filter counters (the filter in the demo's HCM). */
async function extprocStats(envoy: EnvoyProcess): Promise<Record<string, number>> {
  const stats = await envoy.stats('^http\\.ingress\\.ext_proc\\.');
  return Object.fromEntries(
    [...stats].map(([name, value]) => [name.replace('http.ingress.ext_proc.', ''), value]),
  );
}

test.serial(
  "over mTLS the sidecar passes the app's 500 and maps the stopped backend into readygate's 503",
  async (t) => {
    const { listenerUrl, backend, envoy, sidecar, serviceCluster } = t.context;
    // The app's own 500 reaches ext_proc (the 5xx matcher) and passes unchanged: readygate never masks it.
    const appError = await fetch(`${listenerUrl}/app-error`, { signal: AbortSignal.timeout(5000) });
    t.is(appError.status, 500);
    t.is(await appError.text(), 'the application failed\n');
    t.is(appError.headers.get(CAUSE_HEADER), null);
    // That first call opened Envoy's connection to the sidecar (the handshake is inside message_timeout).
    await waitUntil(async () => ((await extprocStats(envoy))['streams_closed'] ?? 0) >= 1, {
      timeoutMs: 5000,
      description: "Envoy's first ext_proc stream closed",
    });
    t.true((await envoy.stat('cluster.readygate_extproc.ssl.handshake'))! >= 1);
    t.is(await envoy.stat('cluster.readygate_extproc.ssl.connection_error'), 0);

    // The backend stops; once Envoy's pooled connection to it is gone, a request finds the port closed.
    await backend.close();
    await waitUntil(
      async () => (await envoy.stat(`cluster.${serviceCluster.replace(':', '_')}.upstream_cx_active`)) === 0,
      {
        timeoutMs: 5000,
        description: "Envoy's connection to the stopped backend closed",
      },
    );
    const before = await extprocStats(envoy);
    const response = await fetch(`${listenerUrl}/orders`, { signal: AbortSignal.timeout(5000) });
    const text = await response.text();
    t.is(response.status, 503, text);
    t.is(response.headers.get('content-type'), PROBLEM_CONTENT_TYPE);
    t.is(response.headers.get(CAUSE_HEADER), 'upstream-connect-failure');
    t.is(response.headers.get('retry-after'), '1');
    const body = JSON.parse(text) as Record<string, unknown>;
    t.deepEqual(body, {
      type: 'https://readygate.dev/problems/upstream-connect-failure',
      title: 'Endpoint unreachable',
      status: 503,
      detail: 'The gateway could not connect to an endpoint of the service; the request was not delivered.',
      request_id: body['request_id'],
    });
    t.regex(String(body['request_id']), /^[0-9a-f-]{36}$/);
    // The sidecar logged this very request's mapping (its first of this cause, so not rate-limited).
    const mapped = await sidecar.line(
      (l) => l['event'] === 'extproc.mapped' && l['request_id'] === body['request_id'],
      'the extproc.mapped line of the request',
      5000,
    );
    // UF after the demo's retry policy spent its retries on the one endpoint (URX); host metadata over EDS.
    t.like(mapped, {
      cause: 'upstream-connect-failure',
      status: 503,
      upstream_status: 503,
      flag_names: 'UF,URX',
      cluster: serviceCluster,
      host_state: 'ready',
      upstream: backend.address,
      pod: 'web-0',
    });
    const after = await extprocStats(envoy);
    const delta = (name: string): number => (after[name] ?? 0) - (before[name] ?? 0);
    t.is(delta('streams_started'), 1);
    t.is(delta('stream_msgs_received'), 1);
    t.is(delta('message_timeouts'), 0);
    t.is(delta('failure_mode_allowed'), 0);
  },
);

test.serial(
  'a certificate from another CA, with the same identity, is refused by readygate and the sidecar',
  async (t) => {
    t.timeout(40_000);
    const { adminUrl, xdsPort, extprocPort, caFile, stranger, envoyGateway, serve } = t.context;
    const { gatewayTls, bootstrap, envoyArgs } = t.context;
    // Controls: the demo's own client certificate gets each server's SETTINGS.
    t.true((await h2Probe(xdsPort, 'readygate', caFile, envoyGateway)).bytes > 0, 'readygate answers it');
    t.true(
      (await h2Probe(extprocPort, 'readygate-extproc', caFile, envoyGateway)).bytes > 0,
      'the sidecar answers it',
    );

    const before = await handshakeFailures(adminUrl);
    const refused = await h2Probe(xdsPort, 'readygate', caFile, stranger);
    t.is(refused.bytes, 0, 'no HTTP/2 byte for a certificate from another CA');
    await waitUntil(
      async () =>
        (await handshakeFailures(adminUrl))['xds/client_certificate'] ===
        (before['xds/client_certificate'] ?? 0) + 1,
      {
        timeoutMs: 5000,
        description: 'readygate to count the refused handshake',
      },
    );
    t.deepEqual(await handshakeFailures(adminUrl), {
      ...before,
      'xds/client_certificate': (before['xds/client_certificate'] ?? 0) + 1,
    });
    const logged = await serve.line(
      (l) => l['event'] === 'tls.handshake-failed',
      'the tls.handshake-failed line',
      5000,
    );
    // The refused client's own address, so an operator can tell which one it was.
    t.like(logged, {
      listener: 'xds',
      reason: 'client_certificate',
      peer: `127.0.0.1:${refused.localPort ?? 'no local port'}`,
    });
    t.is(
      (await h2Probe(extprocPort, 'readygate-extproc', caFile, stranger)).bytes,
      0,
      'the sidecar refuses it too',
    );

    // An Envoy holding that certificate, configured exactly as the gateway, never gets an ADS stream.
    const strangerDir = path.join(t.context.workDir, 'stranger-envoy-tls');
    mkdirSync(strangerDir);
    writeFileSync(path.join(strangerDir, 'tls.crt'), readFileSync(stranger.certFile));
    writeFileSync(path.join(strangerDir, 'tls.key'), readFileSync(stranger.keyFile));
    writeFileSync(path.join(strangerDir, 'ca.crt'), readFileSync(caFile));
    const strangerBootstrap = JSON.parse(
      JSON.stringify(bootstrap.rewritten).replaceAll(`${gatewayTls.dir}/`, `${strangerDir}/`),
    ) as Json;
    (valueAt(strangerBootstrap, 'static_resources', 'listeners', 0, 'address', 'socket_address') as Json)[
      'port_value'
    ] = await freePort();
    const counted = (await handshakeFailures(adminUrl))['xds/client_certificate'] ?? 0;
    const startedAt = Date.now();
    const envoy = await startEnvoy({
      bootstrap: strangerBootstrap,
      extraArgs: envoyArgs.map((arg) => (arg === ENVOY_POD ? 'envoy-stranger' : arg)),
      waitReady: false,
    });
    t.teardown(() => envoy.stop());
    await waitUntil(
      async () => ((await handshakeFailures(adminUrl))['xds/client_certificate'] ?? 0) > counted,
      {
        timeoutMs: 10_000,
        description: "readygate to refuse the stranger Envoy's handshake",
      },
    );
    // Not control_plane.connected_state: Envoy sets it to 1 as it starts each attempt's gRPC stream,
    // before TCP and TLS, so between two refusals it can read 1. No configuration ever arrived:
    t.is(await envoy.stat('cluster_manager.cds.update_success'), 0);
    t.deepEqual(
      (await syncz(adminUrl)).map((e) => e.nodeId),
      [ENVOY_POD],
    );

    // The bootstrap's initial_fetch_timeout: 0s. With Envoy's default (15 s) this gateway would report
    // ready with no clusters at 15 s, and the demo's readiness probe (/ready) would put it in the
    // Service; it must stay unready for as long as it cannot get its configuration.
    const defaultInitialFetchMs = 15_000;
    await new Promise((resolve) =>
      setTimeout(resolve, startedAt + defaultInitialFetchMs + 2000 - Date.now()),
    );
    t.is((await envoy.admin('/ready')).status, 503, 'still unready past the default initial fetch timeout');
    t.is(await envoy.stat('cluster_manager.cds.init_fetch_timeout'), 0);
  },
);
