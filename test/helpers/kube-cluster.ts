/**
 * A real Kubernetes control plane for tests: etcd + kube-apiserver (+ optionally kube-controller-manager)
 * on 127.0.0.1 with free ports, started envtest-style (controller-runtime's flag set), certificates made with
 * openssl in a temp dir. No kubelet: tests create Nodes/Pods or write EndpointSlices themselves.
 *
 * Processes are stopped by `stop()`, and every process still running when the test process exits is
 * killed, so a failing test cannot leak an apiserver. `detached: true` is for scripts/k8s-up.mjs only: the
 * processes then outlive this process and scripts/k8s-down.mjs stops them from the state file.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  AuthenticationV1TokenRequest,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  V1TokenRequestSpec,
  setHeaderOptions,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { eligibleHosts } from '../../src/model/eligibility.js';
import type { EndpointStore } from '../../src/model/store.js';
import { killOnExit } from '../../src/supervised-process.js';
import { installedPath } from './installed-binaries.js';

const execFileAsync = promisify(execFile);

export interface KubeClusterOptions {
  /** Directory holding kube-apiserver, kube-controller-manager and etcd; default: READYGATE_K8S_BIN_DIR or a build. */
  readonly binDir?: string;
  /** Also run kube-controller-manager with these controllers (e.g. ['endpointslice-controller']). */
  readonly controllers?: readonly string[];
  /** Where certificates, data and logs go; default a fresh temp dir, removed by stop(). */
  readonly dir?: string;
  /** Keep processes running after this process exits (scripts/k8s-up.mjs). */
  readonly detached?: boolean;
  /** How long to wait for etcd / the apiserver to become ready. */
  readonly startTimeoutMs?: number;
}

/** What scripts/k8s-down.mjs needs to stop a detached cluster. */
export interface KubeClusterState {
  readonly dir: string;
  readonly server: string;
  readonly adminKubeconfig: string;
  readonly pids: Record<string, number>;
}

export const STATE_FILE = 'cluster.json';

let binDirPromise: Promise<string> | undefined;

/** READYGATE_K8S_BIN_DIR, else the pinned binaries built (or found cached) by scripts/k8s-binaries.sh. */
export function kubeBinDir(): Promise<string> {
  binDirPromise ??= installedPath('READYGATE_K8S_BIN_DIR', 'k8s-binaries.sh', {
    timeoutMs: 3_600_000,
    mustExist: 'kube-apiserver',
  });
  return binDirPromise;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  await execFileAsync('openssl', args, { cwd, timeout: 30_000 });
}

/** A client certificate signed by the cluster CA; `groups` become O= entries (Kubernetes groups). */
async function clientCertificate(
  certsDir: string,
  file: string,
  user: string,
  groups: readonly string[],
): Promise<{ cert: string; key: string }> {
  const subject = `/CN=${user}${groups.map((g) => `/O=${g}`).join('')}`;
  await openssl(certsDir, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    subject,
    '-keyout',
    `${file}.key`,
    '-out',
    `${file}.csr`,
  ]);
  await openssl(certsDir, [
    'x509',
    '-req',
    '-in',
    `${file}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    `${file}.crt`,
  ]);
  return { cert: path.join(certsDir, `${file}.crt`), key: path.join(certsDir, `${file}.key`) };
}

async function makeCertificates(certsDir: string): Promise<void> {
  mkdirSync(certsDir, { recursive: true });
  await openssl(certsDir, [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=readygate-test-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  ]);
  writeFileSync(path.join(certsDir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(certsDir, [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=kube-apiserver',
    '-keyout',
    'apiserver.key',
    '-out',
    'apiserver.csr',
  ]);
  await openssl(certsDir, [
    'x509',
    '-req',
    '-in',
    'apiserver.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    'apiserver.crt',
    '-extfile',
    'san.ext',
  ]);
  await openssl(certsDir, ['genrsa', '-out', 'sa.key', '2048']);
  await openssl(certsDir, ['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
  await clientCertificate(certsDir, 'admin', 'admin', ['system:masters']);
}

/** A kubeconfig YAML (kubectl reads it too) with embedded certificate data. */
function kubeconfigYaml(
  server: string,
  caFile: string,
  user: string,
  auth: { cert: string; key: string } | { token: string },
): string {
  const b64 = (file: string): string => readFileSync(file).toString('base64');
  const userLines =
    'token' in auth
      ? `    token: ${auth.token}\n`
      : `    client-certificate-data: ${b64(auth.cert)}\n    client-key-data: ${b64(auth.key)}\n`;
  return (
    `apiVersion: v1\nkind: Config\nclusters:\n- name: readygate-test\n  cluster:\n    server: ${server}\n` +
    `    certificate-authority-data: ${b64(caFile)}\nusers:\n- name: ${user}\n  user:\n${userLines}` +
    `contexts:\n- name: ${user}@readygate-test\n  context:\n    cluster: readygate-test\n    user: ${user}\n` +
    `current-context: ${user}@readygate-test\n`
  );
}

function kubeConfigFromFile(file: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

interface Managed {
  child: ChildProcess;
  exited: Promise<number | null>;
}

function launch(name: string, binary: string, args: string[], logFile: string, detached: boolean): Managed {
  const log = openSync(logFile, 'a');
  const child = spawn(binary, args, { stdio: ['ignore', log, log], detached });
  closeSync(log);
  if (detached) child.unref();
  else killOnExit(child);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve(code ?? (signal ? -1 : null));
    });
    child.once('error', () => {
      resolve(-1);
    });
  });
  if (child.pid === undefined) throw new Error(`${name} did not start (${binary})`);
  return { child, exited };
}

async function stopProcess(
  managed: Managed | undefined,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 10_000,
): Promise<void> {
  if (!managed || managed.child.exitCode !== null || managed.child.signalCode !== null) return;
  managed.child.kill(signal);
  const timer = setTimeout(() => managed.child.kill('SIGKILL'), graceMs);
  await managed.exited;
  clearTimeout(timer);
}

function tail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** GET over TLS with the admin certificate; resolves with status and body, never throws on HTTP errors. */
function adminGet(
  server: string,
  certsDir: string,
  urlPath: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.get(
      `${server}${urlPath}`,
      {
        ca: readFileSync(path.join(certsDir, 'ca.crt')),
        cert: readFileSync(path.join(certsDir, 'admin.crt')),
        key: readFileSync(path.join(certsDir, 'admin.key')),
        timeout: 2_000,
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          resolve({ status: response.statusCode ?? 0, body });
        });
      },
    );
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', reject);
  });
}

async function waitFor(
  what: string,
  timeoutMs: number,
  exited: Promise<unknown>,
  logFile: string,
  probe: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const process = { exited: false };
  void exited.then(() => {
    process.exited = true;
  });
  while (Date.now() < deadline) {
    if (process.exited) throw new Error(`${what} exited while starting; last log lines:\n${tail(logFile)}`);
    try {
      if (await probe()) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms; last log lines:\n${tail(logFile)}`);
}

export class KubeCluster {
  readonly dir: string;
  readonly server: string;
  readonly adminKubeconfigPath: string;
  readonly #binDir: string;
  readonly #certsDir: string;
  readonly #apiserverPort: number;
  readonly #etcdUrl: string;
  readonly #etcdArgs: string[];
  readonly #controllers: readonly string[];
  readonly #detached: boolean;
  readonly #startTimeoutMs: number;
  readonly #ownsDir: boolean;
  #etcd: Managed | undefined;
  #apiserver: Managed | undefined;
  #controllerManager: Managed | undefined;
  #users = 0;

  private constructor(init: {
    dir: string;
    ownsDir: boolean;
    binDir: string;
    apiserverPort: number;
    etcdPort: number;
    etcdPeerPort: number;
    controllers: readonly string[];
    detached: boolean;
    startTimeoutMs: number;
  }) {
    this.dir = init.dir;
    this.#ownsDir = init.ownsDir;
    this.#binDir = init.binDir;
    this.#certsDir = path.join(init.dir, 'certs');
    this.#apiserverPort = init.apiserverPort;
    this.server = `https://127.0.0.1:${init.apiserverPort}`;
    this.adminKubeconfigPath = path.join(init.dir, 'admin.kubeconfig');
    this.#etcdUrl = `http://127.0.0.1:${init.etcdPort}`;
    const peer = `http://127.0.0.1:${init.etcdPeerPort}`;
    this.#etcdArgs = [
      `--data-dir=${path.join(init.dir, 'etcd')}`,
      `--listen-client-urls=${this.#etcdUrl}`,
      `--advertise-client-urls=${this.#etcdUrl}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=default=${peer}`,
      // Test data is disposable; fsync on a shared 2-core machine only slows every write.
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ];
    this.#controllers = init.controllers;
    this.#detached = init.detached;
    this.#startTimeoutMs = init.startTimeoutMs;
  }

  static async start(options: KubeClusterOptions = {}): Promise<KubeCluster> {
    const binDir = options.binDir ?? (await kubeBinDir());
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'readygate-k8s-'));
    mkdirSync(dir, { recursive: true });
    const [apiserverPort, etcdPort, etcdPeerPort] = [await freePort(), await freePort(), await freePort()];
    const cluster = new KubeCluster({
      dir,
      ownsDir,
      binDir,
      apiserverPort,
      etcdPort,
      etcdPeerPort,
      controllers: options.controllers ?? [],
      detached: options.detached ?? false,
      startTimeoutMs: options.startTimeoutMs ?? 120_000,
    });
    try {
      await makeCertificates(cluster.#certsDir);
      writeFileSync(
        cluster.adminKubeconfigPath,
        kubeconfigYaml(cluster.server, path.join(cluster.#certsDir, 'ca.crt'), 'admin', {
          cert: path.join(cluster.#certsDir, 'admin.crt'),
          key: path.join(cluster.#certsDir, 'admin.key'),
        }),
      );
      await cluster.#startEtcd();
      await cluster.startApiserver();
      if (cluster.#controllers.length > 0) await cluster.#startControllerManager();
      cluster.#writeState();
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /** Admin (system:masters) client configuration. */
  adminConfig(): KubeConfig {
    return kubeConfigFromFile(this.adminKubeconfigPath);
  }

  /**
   * A kubeconfig for a user authenticated by a client certificate (CN=name, O=each group) with no rights
   * until RBAC grants some: how tests run readygate with least privilege.
   */
  async userKubeconfig(
    name: string,
    groups: readonly string[] = [],
  ): Promise<{ path: string; kubeConfig: KubeConfig }> {
    const file = `user-${++this.#users}-${name.replace(/[^a-z0-9-]/gi, '_')}`;
    const cert = await clientCertificate(this.#certsDir, file, name, groups);
    const kubeconfigPath = path.join(this.dir, `${file}.kubeconfig`);
    writeFileSync(
      kubeconfigPath,
      kubeconfigYaml(this.server, path.join(this.#certsDir, 'ca.crt'), name, cert),
    );
    return { path: kubeconfigPath, kubeConfig: kubeConfigFromFile(kubeconfigPath) };
  }

  /** A kubeconfig authenticating with a bearer token (e.g. a ServiceAccount token from TokenRequest). */
  tokenKubeConfig(user: string, token: string): KubeConfig {
    const kubeconfigPath = path.join(this.dir, `token-${++this.#users}.kubeconfig`);
    writeFileSync(
      kubeconfigPath,
      kubeconfigYaml(this.server, path.join(this.#certsDir, 'ca.crt'), user, { token }),
    );
    return kubeConfigFromFile(kubeconfigPath);
  }

  get apiserverRunning(): boolean {
    return (
      this.#apiserver !== undefined &&
      this.#apiserver.child.exitCode === null &&
      this.#apiserver.child.signalCode === null
    );
  }

  /** Starts (or restarts, after stopApiserver) kube-apiserver on the same port and data; waits for /readyz. */
  async startApiserver(): Promise<void> {
    if (this.apiserverRunning) return;
    const certs = this.#certsDir;
    const logFile = path.join(this.dir, 'kube-apiserver.log');
    const args = [
      `--etcd-servers=${this.#etcdUrl}`,
      `--secure-port=${this.#apiserverPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--cert-dir=${certs}`,
      `--tls-cert-file=${path.join(certs, 'apiserver.crt')}`,
      `--tls-private-key-file=${path.join(certs, 'apiserver.key')}`,
      `--client-ca-file=${path.join(certs, 'ca.crt')}`,
      `--service-account-issuer=${this.server}/`,
      `--service-account-key-file=${path.join(certs, 'sa.pub')}`,
      `--service-account-signing-key-file=${path.join(certs, 'sa.key')}`,
      '--service-cluster-ip-range=10.0.0.0/16',
      '--authorization-mode=RBAC',
      '--allow-privileged=true',
      // No ServiceAccount controller runs, so nothing creates the "default" ServiceAccount pods need.
      '--disable-admission-plugins=ServiceAccount',
      '--profiling=false',
    ];
    this.#apiserver = launch(
      'kube-apiserver',
      path.join(this.#binDir, 'kube-apiserver'),
      args,
      logFile,
      this.#detached,
    );
    const exited = this.#apiserver.exited;
    await waitFor('kube-apiserver', this.#startTimeoutMs, exited, logFile, async () => {
      const { status } = await adminGet(this.server, certs, '/readyz');
      return status === 200;
    });
    this.#writeState();
  }

  /**
   * Compacts etcd at its current revision, so any watch resuming from an older resourceVersion gets
   * 410 Gone and has to relist. Returns the revision.
   */
  async compactEtcd(): Promise<number> {
    const post = async (endpoint: string, body: unknown): Promise<unknown> => {
      const response = await fetch(`${this.#etcdUrl}${endpoint}`, {
        method: 'POST',
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5_000),
      });
      if (!response.ok) throw new Error(`etcd ${endpoint}: HTTP ${response.status} ${await response.text()}`);
      return response.json();
    };
    const range = (await post('/v3/kv/range', { key: Buffer.from('compact-probe').toString('base64') })) as {
      header?: { revision?: string };
    };
    const revision = Number(range.header?.revision);
    if (!Number.isInteger(revision) || revision < 1) throw new Error('etcd returned no revision');
    await post('/v3/kv/compaction', { revision: String(revision), physical: true });
    return revision;
  }

  /** Stops kube-apiserver only (etcd keeps the data): an API outage as readygate sees it. */
  async stopApiserver(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await stopProcess(this.#apiserver, signal);
    this.#apiserver = undefined;
  }

  /** Stops every process, and removes the directory when this helper created it. Idempotent. */
  async stop(): Promise<void> {
    await stopProcess(this.#controllerManager);
    await stopProcess(this.#apiserver);
    await stopProcess(this.#etcd);
    this.#controllerManager = undefined;
    this.#apiserver = undefined;
    this.#etcd = undefined;
    if (this.#ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }

  async #startEtcd(): Promise<void> {
    const logFile = path.join(this.dir, 'etcd.log');
    this.#etcd = launch('etcd', path.join(this.#binDir, 'etcd'), this.#etcdArgs, logFile, this.#detached);
    await waitFor('etcd', this.#startTimeoutMs, this.#etcd.exited, logFile, async () => {
      const response = await fetch(`${this.#etcdUrl}/health`, { signal: AbortSignal.timeout(2_000) });
      const body = (await response.json()) as { health?: unknown };
      return body.health === 'true';
    });
  }

  async #startControllerManager(): Promise<void> {
    const logFile = path.join(this.dir, 'kube-controller-manager.log');
    const args = [
      `--kubeconfig=${this.adminKubeconfigPath}`,
      `--controllers=${this.#controllers.join(',')}`,
      '--leader-elect=false',
      '--secure-port=0',
      '--profiling=false',
    ];
    this.#controllerManager = launch(
      'kube-controller-manager',
      path.join(this.#binDir, 'kube-controller-manager'),
      args,
      logFile,
      this.#detached,
    );
    // No health endpoint without a secure port: give it a moment and make sure it did not die on its flags.
    const early = await Promise.race([
      this.#controllerManager.exited.then(() => 'exited' as const),
      new Promise<'running'>((resolve) => {
        setTimeout(() => {
          resolve('running');
        }, 1_000);
      }),
    ]);
    if (early === 'exited') throw new Error(`kube-controller-manager exited:\n${tail(logFile)}`);
  }

  #writeState(): void {
    const pids: Record<string, number> = {};
    for (const [name, managed] of [
      ['etcd', this.#etcd],
      ['kube-apiserver', this.#apiserver],
      ['kube-controller-manager', this.#controllerManager],
    ] as const) {
      if (managed?.child.pid !== undefined) pids[name] = managed.child.pid;
    }
    const state: KubeClusterState = {
      dir: this.dir,
      server: this.server,
      adminKubeconfig: this.adminKubeconfigPath,
      pids,
    };
    writeFileSync(path.join(this.dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  }
}

/** Shorthand for KubeCluster.start. */
export function startKubeCluster(options: KubeClusterOptions = {}): Promise<KubeCluster> {
  return KubeCluster.start(options);
}

// ---- Objects: what tests write to the cluster ----

/** Applies objects with server-side apply as one field manager, so a test states the whole desired object each time. */
export class KubeObjects {
  readonly api: KubernetesObjectApi;
  readonly core: CoreV1Api;

  constructor(readonly kubeConfig: KubeConfig) {
    this.api = KubernetesObjectApi.makeApiClient(kubeConfig);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
  }

  /** Creates or updates to exactly these fields (server-side apply, forced). */
  async apply<T extends KubernetesObject>(object: T): Promise<T> {
    return this.api.patch(
      object,
      undefined,
      undefined,
      'readygate-tests',
      true,
      PatchStrategy.ServerSideApply,
    );
  }

  async remove(object: KubernetesObject): Promise<void> {
    await this.api.delete(object);
  }

  async namespace(name: string): Promise<void> {
    await this.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  }

  /** Applies every document of a YAML manifest (namespaces of namespaced objects are created first). */
  async applyManifest(file: string): Promise<KubernetesObject[]> {
    const objects = parseAllDocuments(readFileSync(file, 'utf8'))
      .map((doc) => doc.toJS() as KubernetesObject | null)
      .filter((object): object is KubernetesObject => object !== null);
    const namespaces = new Set(objects.map((o) => o.metadata?.namespace).filter((n): n is string => !!n));
    for (const namespace of namespaces) await this.namespace(namespace);
    const applied: KubernetesObject[] = [];
    for (const object of objects) applied.push(await this.apply(object));
    return applied;
  }

  /** A short-lived bearer token for a ServiceAccount (TokenRequest API), as a pod would get mounted. */
  async serviceAccountToken(namespace: string, name: string): Promise<string> {
    const request = new AuthenticationV1TokenRequest();
    request.spec = new V1TokenRequestSpec();
    request.spec.audiences = [];
    request.spec.expirationSeconds = 3600;
    const response = await this.core.createNamespacedServiceAccountToken({ name, namespace, body: request });
    const token = response.status?.token;
    if (!token) throw new Error(`no token issued for ServiceAccount ${namespace}/${name}`);
    return token;
  }

  /** Sets a Pod's status the way a kubelet would (phase, IPs, conditions): tests run no kubelet. */
  async setPodStatus(
    namespace: string,
    name: string,
    status: { podIP: string; ready: boolean; phase?: string },
  ): Promise<void> {
    const body = {
      status: {
        phase: status.phase ?? 'Running',
        podIP: status.podIP,
        podIPs: [{ ip: status.podIP }],
        conditions: [{ type: 'Ready', status: status.ready ? 'True' : 'False' }],
      },
    };
    await this.core.patchNamespacedPodStatus(
      { name, namespace, body },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
  }
}

/** A plain object as written in a manifest (client-node's model classes are for what it returns). */
export interface ManifestObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { namespace?: string; name: string; labels?: Record<string, string> };
  readonly [field: string]: unknown;
}

export const TEST_MANAGED_BY = 'readygate-tests';

export interface SliceEndpointSpec {
  readonly addresses: readonly string[];
  readonly conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  readonly nodeName?: string;
  readonly zone?: string;
  readonly targetRef?: { kind: string; namespace: string; name: string };
}

/** A hand-managed EndpointSlice: our own managed-by label, so no controller ever touches it. */
export function endpointSlice(spec: {
  namespace: string;
  name: string;
  service: string;
  addressType?: 'IPv4' | 'IPv6';
  ports: readonly { name?: string; port: number; protocol?: string }[];
  endpoints: readonly SliceEndpointSpec[];
  labels?: Record<string, string>;
}): ManifestObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace: spec.namespace,
      name: spec.name,
      labels: {
        'kubernetes.io/service-name': spec.service,
        'endpointslice.kubernetes.io/managed-by': TEST_MANAGED_BY,
        ...spec.labels,
      },
    },
    addressType: spec.addressType ?? 'IPv4',
    ports: spec.ports.map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' })),
    endpoints: spec.endpoints.map((e) => ({ ...e, addresses: [...e.addresses] })),
  };
}

/** A Service; without `selector` it is selector-less, so only hand-managed slices feed it. */
export function service(spec: {
  namespace: string;
  name: string;
  ports: readonly { name?: string; port: number; targetPort?: number | string; protocol?: string }[];
  selector?: Record<string, string>;
  labels?: Record<string, string>;
  type?: string;
  externalName?: string;
  clusterIP?: string;
  publishNotReadyAddresses?: boolean;
}): ManifestObject {
  const ports = spec.ports.map((p) => ({
    ...(p.name ? { name: p.name } : {}),
    port: p.port,
    protocol: p.protocol ?? 'TCP',
    ...(p.targetPort !== undefined ? { targetPort: p.targetPort } : {}),
  }));
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} },
    spec: {
      ...(spec.type ? { type: spec.type } : {}),
      ...(spec.externalName ? { externalName: spec.externalName } : {}),
      ...(spec.clusterIP ? { clusterIP: spec.clusterIP } : {}),
      ...(spec.selector ? { selector: spec.selector } : {}),
      ...(spec.publishNotReadyAddresses ? { publishNotReadyAddresses: true } : {}),
      ...(spec.type === 'ExternalName' ? {} : { ports }),
    },
  };
}

// ---- Reading what the source produced ----

/** The eligible hosts of one Service port as `address:port HEALTH` lines, sorted; [] when absent. */
export function hostLines(store: EndpointStore, key: string, portKey: string): string[] {
  const model = store.get(key);
  const port = model?.ports.find((p) => p.key === portKey);
  if (!model || !port) return [];
  return eligibleHosts(model, port)
    .map((h) => `${h.address.includes(':') ? `[${h.address}]` : h.address}:${h.port} ${h.health}`)
    .sort();
}

/**
 * Resolves with the milliseconds it took until `check` holds for the store (checked now and on every store
 * change); rejects after `timeoutMs` with what the store held then.
 */
export function waitForStore(
  store: EndpointStore,
  check: (store: EndpointStore) => boolean,
  timeoutMs: number,
  describe: () => unknown = () => store.services,
): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const done = (): boolean => {
      if (!check(store)) return false;
      cleanup();
      resolve(performance.now() - started);
      return true;
    };
    const onChange = (): void => {
      done();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(`store condition not met within ${timeoutMs} ms; store: ${JSON.stringify(describe())}`),
      );
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      store.off('change', onChange);
      store.off('synced', onChange);
    };
    store.on('change', onChange);
    store.on('synced', onChange);
    done();
  });
}

// ---- A TCP proxy in front of the apiserver: network faults without touching the apiserver ----

export type ProxyMode = 'forward' | 'refuse' | 'blackhole';

/**
 * Forwards 127.0.0.1:port → 127.0.0.1:targetPort. `refuse` drops every connection (the client sees resets,
 * as when the apiserver is gone); `blackhole` keeps connections open and passes no bytes (a dead TCP
 * stream, which client-node 1.4 never notices by itself); `forward` resumes, closing blackholed connections.
 */
export class TcpProxy {
  readonly #server: net.Server;
  readonly #targetPort: number;
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  #mode: ProxyMode = 'forward';

  private constructor(server: net.Server, targetPort: number) {
    this.#server = server;
    this.#targetPort = targetPort;
    server.on('connection', (client) => {
      this.#accept(client);
    });
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = net.createServer();
    const proxy = new TcpProxy(server, targetPort);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, resolve);
    });
    return proxy;
  }

  get port(): number {
    const address = this.#server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  set mode(mode: ProxyMode) {
    const previous = this.#mode;
    this.#mode = mode;
    if (mode === 'refuse' || (mode === 'forward' && previous === 'blackhole')) {
      for (const pair of this.#pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      this.#pairs.clear();
    } else if (mode === 'blackhole') {
      for (const pair of this.#pairs) {
        pair.client.unpipe(pair.upstream);
        pair.upstream.unpipe(pair.client);
      }
    }
  }

  async close(): Promise<void> {
    this.mode = 'refuse';
    await new Promise<void>((resolve) => {
      this.#server.close(() => {
        resolve();
      });
    });
  }

  #accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.#mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: '127.0.0.1', port: this.#targetPort });
    upstream.on('error', () => client.destroy());
    const pair = { client, upstream };
    this.#pairs.add(pair);
    const forget = (): void => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', forget);
    upstream.on('close', forget);
    if (this.#mode === 'forward') {
      client.pipe(upstream);
      upstream.pipe(client);
    }
  }
}

/** The same credentials, pointed at another local port (a TcpProxy). */
export function kubeConfigVia(kubeConfig: KubeConfig, port: number): KubeConfig {
  const copy = new KubeConfig();
  copy.loadFromString(kubeConfig.exportConfig());
  copy.clusters = copy.clusters.map((cluster) => ({
    ...cluster,
    server: cluster.server.replace(/:\d+$/, `:${port}`),
  }));
  return copy;
}

/**
 * Applies the shipped RBAC manifests and binds the user `readygate` to exactly what they grant, so a
 * test runs readygate with the production permissions and not as an admin. `readiness` adds
 * rbac-readiness.yaml (pods/status patch, the leader-election Lease).
 */
export async function readygateIdentity(
  cluster: KubeCluster,
  admin: KubeObjects,
  options: { readiness?: boolean } = {},
): Promise<KubeConfig> {
  const manifests = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'kind', 'base');
  await admin.applyManifest(path.join(manifests, 'rbac.yaml'));
  const subjects = [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'readygate' }];
  const clusterRoles = ['readygate', ...(options.readiness ? ['readygate-readiness-gates'] : [])];
  if (options.readiness) await admin.applyManifest(path.join(manifests, 'rbac-readiness.yaml'));
  for (const role of clusterRoles) {
    await admin.apply({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: `${role}-test-user` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects,
    });
  }
  if (options.readiness) {
    await admin.apply({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'leader-election-test-user', namespace: 'readygate' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'readygate-leader-election' },
      subjects,
    });
  }
  return (await cluster.userKubeconfig('readygate')).kubeConfig;
}

/** Kubernetes' rule restated independently of src/model/eligibility.ts, for when ready endpoints exist. */
export function expectedHealth(c: SliceEndpointSpec['conditions'] = {}): 'HEALTHY' | 'DRAINING' | undefined {
  const ready = c.ready ?? true;
  const serving = c.serving ?? ready;
  const terminating = c.terminating ?? false;
  if (!terminating) return ready ? 'HEALTHY' : undefined;
  return serving ? 'DRAINING' : undefined;
}

/** All 27 ready × serving × terminating combinations, absent (nil) included. */
export function everyCombination(): NonNullable<SliceEndpointSpec['conditions']>[] {
  const combos: NonNullable<SliceEndpointSpec['conditions']>[] = [];
  for (const ready of [true, false, undefined])
    for (const serving of [true, false, undefined])
      for (const terminating of [true, false, undefined]) {
        combos.push({
          ...(ready === undefined ? {} : { ready }),
          ...(serving === undefined ? {} : { serving }),
          ...(terminating === undefined ? {} : { terminating }),
        });
      }
  return combos;
}
