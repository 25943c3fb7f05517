/**
 * What CI can check of the kind demo without a container engine:
 * - kind/base renders with `kubectl kustomize`, and every rendered object passes
 *   `kubectl apply --dry-run=server --validate=strict` against a real kube-apiserver (admission, defaulting,
 *   strict field validation), namespaces created first; kind/overlays/ready-only (rollout-check's
 *   SETUP=ready-only) renders, differs from kind/base only where setup (b) should, and validates too;
 * - the objects say what the demo relies on (probes, readiness gate, preStop drain-wait, PDB, sidecar,
 *   mTLS Secrets mounted and used, NetworkPolicies around xDS, readygate's admin and Envoy's admin);
 * - scripts/certs.sh (with a stand-in kubectl, test/helpers/kind-demo.ts) issues certificates readygate's
 *   own checks accept, each Secret holding its certificate, its key and the demo CA;
 * - the Envoy bootstrap in the ConfigMap passes `envoy --mode validate` on the pinned Envoy;
 * - the scripts pass shellcheck (installed from Debian when missing) and `bash -n`; the .mjs files parse.
 * The demo's mTLS does run, on loopback: kind-mtls.test.ts starts readygate, the ext_proc sidecar and the
 * pinned Envoy from these manifests with certs.sh's certificates. The rest of the demo (kind, docker
 * build, the rollout) does not run here: see kind/README.md.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { parseAllDocuments } from 'yaml';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync } from 'node:fs';
import { loadTlsMaterial } from '../../src/tls/material.js';
import { peerIdentity } from '../../src/tls/identity.js';
import { envoyBinary } from '../helpers/envoy-process.js';
import {
  findObject as find,
  kindDir,
  renderKind,
  runKindCerts,
  type RenderedObject,
} from '../helpers/kind-demo.js';
import { createTestPki } from '../helpers/tls-certs.js';
import { KubeObjects, startKubeCluster, type KubeCluster } from '../helpers/kube-cluster.js';

const execFileAsync = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const kubectl = process.env['READYGATE_KUBECTL'] ?? 'kubectl';

interface Context {
  cluster: KubeCluster;
  objects: RenderedObject[];
  workDir: string;
}
const test = anyTest as TestFn<Context>;

async function run(
  command: string,
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(command, [...args], {
      cwd: repoRoot,
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return {
      code: typeof e.code === 'number' ? e.code : -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? e.message,
    };
  }
}

test.before(async (t) => {
  t.context.workDir = mkdtempSync(path.join(tmpdir(), 'readygate-kind-'));
  t.context.objects = await renderKind('base');
  t.context.cluster = await startKubeCluster();
});

test.after.always(async (t) => {
  const { cluster, workDir } = t.context as Partial<Context>;
  await cluster?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test.serial('every object of kind/base passes kubectl apply --dry-run=server', async (t) => {
  const { cluster, objects, workDir } = t.context;
  const admin = new KubeObjects(cluster.adminConfig());
  // Namespaced objects need their namespace to exist, even for a dry run.
  const namespaces = objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name);
  for (const name of namespaces) await admin.namespace(name);
  t.true(objects.length >= 10, `rendered ${objects.length} objects`);
  for (const [index, object] of objects.entries()) {
    const file = path.join(workDir, `object-${index}.yaml`);
    writeFileSync(file, JSON.stringify(object));
    const result = await run(kubectl, [
      '--kubeconfig',
      cluster.adminKubeconfigPath,
      'apply',
      '--dry-run=server',
      '--validate=strict',
      '-f',
      file,
    ]);
    const label = `${object.kind} ${object.metadata.namespace ?? ''}/${object.metadata.name}`;
    t.is(result.code, 0, `${label}: ${result.stderr.trim()}`);
    if (result.code === 0) t.regex(result.stdout, /\(server dry run\)/, label);
  }
  t.log(`${objects.length} objects validated: ${objects.map((o) => o.kind).join(', ')}`);
});

test('the manifests declare what the demo relies on', (t) => {
  const { objects } = t.context;
  type Container = {
    name: string;
    args?: string[];
    command?: string[];
    readinessProbe?: unknown;
    livenessProbe?: unknown;
    restartPolicy?: string;
    lifecycle?: { preStop?: { exec?: { command?: string[] } } };
  };
  type PodSpec = {
    containers: Container[];
    initContainers?: Container[];
    readinessGates?: { conditionType: string }[];
    serviceAccountName?: string;
    securityContext?: { runAsNonRoot?: boolean };
  };
  const podSpec = (o: RenderedObject): PodSpec => (o.spec as { template: { spec: PodSpec } }).template.spec;

  const readygate = find(objects, 'Deployment', 'readygate');
  t.is((readygate.spec as { replicas: number }).replicas, 2);
  const control = podSpec(readygate).containers[0]!;
  t.truthy(control.readinessProbe);
  t.truthy(control.livenessProbe);
  t.is(podSpec(readygate).serviceAccountName, 'readygate');
  t.is(control.args?.[0], 'serve');
  // The demo app's readiness gate is set by readygate, and with two replicas they must ask each other.
  t.true(control.args?.includes('--readiness-gates'));
  t.true(control.args?.includes('--peers-dns=readygate-peers.readygate.svc.cluster.local:9102'));
  t.is((find(objects, 'Service', 'readygate-peers').spec as { clusterIP?: string }).clusterIP, 'None');

  const gateway = podSpec(find(objects, 'Deployment', 'envoy'));
  const sidecar = gateway.initContainers?.find((c) => c.name === 'extproc');
  t.is(sidecar?.restartPolicy, 'Always', 'ext_proc runs as a native sidecar');
  t.is(sidecar?.args?.[0], 'extproc');

  const web = podSpec(find(objects, 'Deployment', 'web'));
  t.deepEqual(web.readinessGates, [{ conditionType: 'readygate.io/envoy-synced' }]);
  t.truthy(web.containers[0]!.readinessProbe);
  t.deepEqual(web.containers[0]!.lifecycle?.preStop?.exec?.command, ['readygate', 'drain-wait']);
  find(objects, 'PodDisruptionBudget', 'web');
  find(objects, 'Service', 'readygate');
  find(objects, 'ServiceAccount', 'readygate');
  find(objects, 'ClusterRole', 'readygate');
  for (const o of objects.filter((x) => x.kind === 'Deployment'))
    t.true(podSpec(o).securityContext?.runAsNonRoot, `${o.metadata.name} runs as non-root`);
});

test('the gateway drains itself: readiness on /ready, the preStop hook, drain flags, grace period, retries', (t) => {
  const { objects } = t.context;
  type EnvoyContainer = {
    name: string;
    args: string[];
    env?: { name: string; value?: string }[];
    readinessProbe?: {
      httpGet?: { path: string; port: string };
      periodSeconds?: number;
      failureThreshold?: number;
    };
    livenessProbe?: { httpGet?: { path: string; port: string } };
    lifecycle?: { preStop?: { exec?: { command?: string[] } } };
    volumeMounts?: { name: string; mountPath: string }[];
  };
  type GatewaySpec = {
    terminationGracePeriodSeconds?: number;
    containers: EnvoyContainer[];
    volumes?: { name: string; configMap?: { name: string } }[];
  };
  const deployment = find(objects, 'Deployment', 'envoy');
  const spec = (deployment.spec as { template: { spec: GatewaySpec } }).template.spec;
  const envoy = spec.containers.find((c) => c.name === 'envoy')!;

  t.deepEqual(envoy.readinessProbe?.httpGet, { path: '/ready', port: 'admin' });
  // Not /ready: a draining Envoy is alive.
  t.deepEqual(envoy.livenessProbe?.httpGet, { path: '/server_info', port: 'admin' });
  t.deepEqual(envoy.lifecycle?.preStop?.exec?.command, ['/bin/bash', '/etc/envoy/drain.sh']);

  // The hook is the repository's script, from the ConfigMap mounted at /etc/envoy.
  const mount = envoy.volumeMounts?.find((m) => m.mountPath === '/etc/envoy');
  const volume = spec.volumes?.find((v) => v.name === mount?.name);
  const configMap = objects.find(
    (o) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name,
  );
  t.is(
    configMap?.data?.['drain.sh'],
    readFileSync(path.join(kindDir, 'base', 'envoy-drain.sh'), 'utf8'),
    'the mounted drain.sh is kind/base/envoy-drain.sh',
  );

  // One drain time for Envoy and the hook; the grace period covers the hook's longest run with room.
  const env = new Map((envoy.env ?? []).map((e) => [e.name, e.value]));
  const drainSeconds = Number(env.get('DRAIN_SECONDS'));
  const requestSeconds = Number(env.get('REQUEST_SECONDS'));
  t.true(drainSeconds > 0 && requestSeconds > 0, 'DRAIN_SECONDS and REQUEST_SECONDS are set');
  t.is(envoy.args[envoy.args.indexOf('--drain-time-s') + 1], '$(DRAIN_SECONDS)');
  t.is(envoy.args[envoy.args.indexOf('--drain-strategy') + 1], 'immediate');
  const probe = envoy.readinessProbe!;
  t.true(
    (probe.periodSeconds ?? 10) * (probe.failureThreshold ?? 3) < drainSeconds,
    'the readiness probe fails well inside the drain time',
  );
  t.true(
    (spec.terminationGracePeriodSeconds ?? 30) >= drainSeconds + requestSeconds + 5,
    `grace period ${spec.terminationGracePeriodSeconds} s for a hook of up to ${drainSeconds + requestSeconds} s`,
  );

  // Retries only for what never reached an app, on another endpoint; REQUEST_SECONDS is the route timeout.
  const bootstrap = parseAllDocuments(configMap?.data?.['envoy.yaml'] ?? '')[0]?.toJS() as {
    static_resources: {
      listeners: {
        filter_chains: {
          filters: { typed_config: { route_config: { virtual_hosts: Record<string, unknown>[] } } }[];
        }[];
      }[];
    };
  };
  const virtualHost =
    bootstrap.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config.route_config
      .virtual_hosts[0]!;
  t.deepEqual(virtualHost['retry_policy'], {
    retry_on: 'connect-failure,refused-stream,reset-before-request',
    num_retries: 2,
    retry_host_predicate: [
      {
        name: 'envoy.retry_host_predicates.previous_hosts',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
        },
      },
    ],
    host_selection_retry_max_attempts: 3,
  });
  const routes = virtualHost['routes'] as { route: { timeout?: string } }[];
  t.is(routes[0]?.route.timeout, `${requestSeconds}s`);
});

for (const [configMapName, role] of [
  ['envoy-bootstrap', 'gateway'],
  ['envoy-sidecar-bootstrap', 'client sidecar'],
] as const)
  test(`the ${role} Envoy bootstrap in the ConfigMap passes envoy --mode validate`, async (t) => {
    await validateBootstrap(t, configMapName);
  });

async function validateBootstrap(t: ExecutionContext<Context>, configMapName: string): Promise<void> {
  const { objects, workDir: parentDir } = t.context;
  const workDir = path.join(parentDir, configMapName);
  mkdirSync(workDir, { recursive: true });
  const configMap = objects.find(
    (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith(`${configMapName}-`),
  );
  const bootstrap = configMap?.data?.['envoy.yaml'];
  if (bootstrap === undefined) {
    t.fail(`no ${configMapName} ConfigMap with envoy.yaml`);
    return;
  }
  // The bootstrap reads its mTLS files from the envoy-gateway-tls Secret's mount; validate mode opens
  // them, so they point at a test PKI's files here.
  const pki = createTestPki();
  t.teardown(() => {
    pki.remove();
  });
  const ca = pki.ca('ca');
  const client = pki.issue(ca, 'envoy', { cn: 'envoy-gateway', usage: 'clientAuth' });
  const tlsDir = path.join(workDir, 'envoy-tls');
  mkdirSync(tlsDir, { recursive: true });
  copyFileSync(client.certFile, path.join(tlsDir, 'tls.crt'));
  copyFileSync(client.keyFile, path.join(tlsDir, 'tls.key'));
  copyFileSync(ca.certFile, path.join(tlsDir, 'ca.crt'));
  t.true(bootstrap.includes('/etc/envoy-tls/tls.crt'));
  const file = path.join(workDir, 'envoy.yaml');
  writeFileSync(file, bootstrap.replaceAll('/etc/envoy-tls/', `${tlsDir}/`));
  const result = await run(await envoyBinary(), [
    '--mode',
    'validate',
    '-c',
    file,
    '--service-node',
    'validate',
    '--log-level',
    'warning',
    '--disable-hot-restart',
  ]);
  t.is(result.code, 0, `${result.stdout}\n${result.stderr}`);
}

/** shellcheck from PATH, else installed from Debian's packages (as root, with apt-get), else undefined. */
async function shellcheck(log: (line: string) => void): Promise<string | undefined> {
  if ((await run('shellcheck', ['--version'])).code === 0) return 'shellcheck';
  const root = process.getuid?.() === 0;
  if (!root || (await run('apt-get', ['--version'])).code !== 0) return undefined;
  log('shellcheck missing: installing it from Debian (apt-get update && apt-get install -y shellcheck)');
  const update = await run('apt-get', ['update', '-qq'], 180_000);
  if (update.code !== 0) {
    log(`apt-get update failed: ${update.stderr.trim().split('\n').pop() ?? ''}`);
    return undefined;
  }
  const install = await run('apt-get', ['install', '-y', '-qq', 'shellcheck'], 300_000);
  if (install.code !== 0) {
    log(`apt-get install shellcheck failed: ${install.stderr.trim().split('\n').pop() ?? ''}`);
    return undefined;
  }
  return (await run('shellcheck', ['--version'])).code === 0 ? 'shellcheck' : undefined;
}

test('the kind scripts pass shellcheck and bash -n; the .mjs files parse', async (t) => {
  t.timeout(600_000);
  const scriptsDir = path.join(kindDir, 'scripts');
  const shells = readdirSync(scriptsDir)
    .filter((f) => f.endsWith('.sh'))
    .map((f) => path.join(scriptsDir, f));
  t.true(shells.length >= 4, 'up, rollout-check, certs and down scripts exist');
  // The gateway Envoy's preStop hook (shipped in the envoy-bootstrap ConfigMap).
  shells.push(path.join(kindDir, 'base', 'envoy-drain.sh'));
  for (const file of shells) {
    const syntax = await run('bash', ['-n', file]);
    t.is(syntax.code, 0, `${path.relative(repoRoot, file)}: ${syntax.stderr}`);
  }
  for (const file of [
    path.join(scriptsDir, 'load.mjs'),
    path.join(kindDir, 'base', 'demo-app', 'server.mjs'),
  ]) {
    const check = await run(process.execPath, ['--check', file]);
    t.is(check.code, 0, `${path.relative(repoRoot, file)}: ${check.stderr}`);
  }
  const makefile = readFileSync(path.join(kindDir, 'Makefile'), 'utf8');
  for (const target of ['up', 'rollout-check', 'certs', 'down'])
    t.regex(makefile, new RegExp(`^${target}:`, 'm'));

  const binary = await shellcheck((line) => {
    t.log(line);
  });
  if (binary === undefined) {
    t.fail('shellcheck is not installed and could not be installed from Debian (apt-get)');
    return;
  }
  // -x follows `source` into common.sh; run from the repo root like CI does.
  const lint = await run(binary, ['-x', ...shells]);
  t.is(lint.code, 0, lint.stdout + lint.stderr);
});

type TlsContainer = {
  name: string;
  args?: string[];
  volumeMounts?: { name: string; mountPath: string }[];
};
type TlsPodSpec = {
  containers: TlsContainer[];
  initContainers?: TlsContainer[];
  volumes?: { name: string; secret?: { secretName: string; defaultMode?: number } }[];
  securityContext?: { fsGroup?: number };
};

/** The Secret mounted at `directory` in `container`, and the mode its files get. */
function secretAt(
  spec: TlsPodSpec,
  container: TlsContainer,
  directory: string,
): { name?: string; mode?: number } {
  const mount = container.volumeMounts?.find((m) => m.mountPath === directory);
  const volume = spec.volumes?.find((v) => v.name === mount?.name);
  return {
    ...(volume?.secret ? { name: volume.secret.secretName } : {}),
    ...(volume?.secret?.defaultMode === undefined ? {} : { mode: volume.secret.defaultMode }),
  };
}

test('mTLS: readygate, the ext_proc sidecar and Envoy mount their Secrets and use them', (t) => {
  const { objects } = t.context;
  const podSpec = (o: RenderedObject): TlsPodSpec =>
    (o.spec as { template: { spec: TlsPodSpec } }).template.spec;
  const tlsArgs = (directory: string): string[] => [
    `--tls-cert=${directory}/tls.crt`,
    `--tls-key=${directory}/tls.key`,
    `--tls-client-ca=${directory}/ca.crt`,
  ];

  const readygate = podSpec(find(objects, 'Deployment', 'readygate'));
  const control = readygate.containers[0]!;
  for (const arg of tlsArgs('/etc/readygate/tls')) t.true(control.args?.includes(arg), arg);
  t.deepEqual(secretAt(readygate, control, '/etc/readygate/tls'), { name: 'readygate-tls', mode: 0o440 });
  t.is(readygate.securityContext?.fsGroup, 1000);

  const gateway = podSpec(find(objects, 'Deployment', 'envoy'));
  const sidecar = gateway.initContainers!.find((c) => c.name === 'extproc')!;
  for (const arg of tlsArgs('/etc/readygate/tls')) t.true(sidecar.args?.includes(arg), arg);
  t.true(sidecar.args?.includes('--address=127.0.0.1:18001'), 'ext_proc stays on loopback');
  t.deepEqual(secretAt(gateway, sidecar, '/etc/readygate/tls'), {
    name: 'readygate-extproc-tls',
    mode: 0o440,
  });
  const envoy = gateway.containers.find((c) => c.name === 'envoy')!;
  t.deepEqual(secretAt(gateway, envoy, '/etc/envoy-tls'), { name: 'envoy-gateway-tls', mode: 0o440 });
  t.is(gateway.securityContext?.fsGroup, 101);

  // Envoy's two gRPC clusters: mTLS with its client certificate, and the right server name required.
  const configMap = objects.find(
    (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('envoy-bootstrap'),
  );
  const bootstrap = parseAllDocuments(configMap?.data?.['envoy.yaml'] ?? '')[0]?.toJS() as {
    static_resources: {
      clusters: { name: string; transport_socket?: { typed_config: Record<string, unknown> } }[];
    };
  };
  const expected: Record<string, string> = {
    readygate_xds: 'readygate',
    readygate_extproc: 'readygate-extproc',
  };
  for (const [name, san] of Object.entries(expected)) {
    const cluster = bootstrap.static_resources.clusters.find((c) => c.name === name);
    const context = cluster?.transport_socket?.typed_config['common_tls_context'] as
      | {
          alpn_protocols?: string[];
          tls_certificates?: { certificate_chain: { filename: string } }[];
          validation_context?: {
            trusted_ca?: { filename: string };
            match_typed_subject_alt_names?: { san_type: string; matcher: { exact: string } }[];
          };
        }
      | undefined;
    t.deepEqual(context?.alpn_protocols, ['h2'], name);
    t.is(context?.tls_certificates?.[0]?.certificate_chain.filename, '/etc/envoy-tls/tls.crt', name);
    t.is(context?.validation_context?.trusted_ca?.filename, '/etc/envoy-tls/ca.crt', name);
    t.deepEqual(context?.validation_context?.match_typed_subject_alt_names, [
      { san_type: 'DNS', matcher: { exact: san } },
    ]);
  }
});

test('NetworkPolicy: xDS only from the gateway pods, admin only from peers and drain-wait, no Envoy admin', (t) => {
  const { objects } = t.context;
  type Peer = {
    namespaceSelector?: { matchLabels?: Record<string, string> };
    podSelector?: { matchLabels?: Record<string, string> };
  };
  type Policy = {
    podSelector: { matchLabels: Record<string, string> };
    policyTypes: string[];
    ingress: { from?: Peer[]; ports: { port: string | number; protocol: string }[] }[];
  };
  const readygate = find(objects, 'NetworkPolicy', 'readygate');
  t.is(readygate.metadata.namespace, 'readygate');
  const policy = readygate.spec as Policy;
  t.deepEqual(policy.podSelector.matchLabels, { 'app.kubernetes.io/name': 'readygate' });
  t.deepEqual(policy.policyTypes, ['Ingress']);
  t.deepEqual(policy.ingress, [
    {
      from: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'gateway' } },
          podSelector: { matchLabels: { 'app.kubernetes.io/name': 'envoy-gateway' } },
        },
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'gateway' } },
          podSelector: { matchLabels: { 'app.kubernetes.io/name': 'client' } },
        },
      ],
      ports: [{ port: 'xds', protocol: 'TCP' }],
    },
    {
      from: [
        { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'readygate' } } },
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'demo' } } },
      ],
      ports: [{ port: 'admin', protocol: 'TCP' }],
    },
  ]);
  // The named ports the policy admits are the container's.
  const container = (
    find(objects, 'Deployment', 'readygate').spec as {
      template: { spec: { containers: { ports: { name: string; containerPort: number }[] }[] } };
    }
  ).template.spec.containers[0]!;
  t.deepEqual(
    container.ports.map((p) => [p.name, p.containerPort]),
    [
      ['xds', 18000],
      ['admin', 9102],
    ],
  );
  // The gateway pods' labels match the selector the xDS rule uses.
  const gatewayLabels = (
    find(objects, 'Deployment', 'envoy').spec as {
      template: { metadata: { labels: Record<string, string> } };
    }
  ).template.metadata.labels;
  t.is(gatewayLabels['app.kubernetes.io/name'], 'envoy-gateway');

  const envoy = find(objects, 'NetworkPolicy', 'envoy-gateway');
  t.is(envoy.metadata.namespace, 'gateway');
  t.deepEqual((envoy.spec as Policy).ingress, [{ ports: [{ port: 'http', protocol: 'TCP' }] }]);

  // The client with the Envoy sidecar: its labels match the xDS rule; no pod may connect to it.
  const client = find(objects, 'Deployment', 'client');
  t.is(client.metadata.namespace, 'gateway');
  t.is(
    (client.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels[
      'app.kubernetes.io/name'
    ],
    'client',
  );
  const clientPolicy = find(objects, 'NetworkPolicy', 'client').spec as Partial<Policy>;
  t.deepEqual(clientPolicy.podSelector?.matchLabels, { 'app.kubernetes.io/name': 'client' });
  t.deepEqual(clientPolicy.policyTypes, ['Ingress']);
  t.is(clientPolicy.ingress, undefined);
});

test('scripts/certs.sh issues certificates that readygate accepts and Secrets named as the pods mount them', async (t) => {
  const { workDir } = t.context;
  const { pkiDir, stderr, secrets } = await runKindCerts(workDir);
  t.regex(stderr, /secret readygate\/readygate-tls/);
  t.deepEqual(
    secrets.map((s) => `${s.namespace}/${s.name} ${s.type ?? ''}: ${Object.keys(s.files).join(',')}`),
    [
      'readygate/readygate-tls kubernetes.io/tls: tls.crt,tls.key,ca.crt',
      'gateway/envoy-gateway-tls kubernetes.io/tls: tls.crt,tls.key,ca.crt',
      'gateway/readygate-extproc-tls kubernetes.io/tls: tls.crt,tls.key,ca.crt',
    ],
  );

  const file = (name: string): string => path.join(pkiDir, name);
  // Each Secret holds its own certificate and key, and the demo CA.
  for (const [secret, prefix] of [
    ['readygate-tls', 'readygate'],
    ['envoy-gateway-tls', 'envoy-gateway'],
    ['readygate-extproc-tls', 'readygate-extproc'],
  ] as const)
    t.deepEqual(secrets.find((s) => s.name === secret)?.files, {
      'tls.crt': file(`${prefix}.crt`),
      'tls.key': file(`${prefix}.key`),
      'ca.crt': file('ca.crt'),
    });
  const server = await loadTlsMaterial({
    certFile: file('readygate.crt'),
    keyFile: file('readygate.key'),
    clientCaFile: file('ca.crt'),
  });
  t.is(server.certSubject, 'CN=readygate');
  await loadTlsMaterial({ certFile: file('readygate-extproc.crt'), keyFile: file('readygate-extproc.key') });
  const ca = new X509Certificate(readFileSync(file('ca.crt')));
  const certificate = (name: string): X509Certificate => new X509Certificate(readFileSync(file(name)));
  for (const name of ['readygate.crt', 'envoy-gateway.crt', 'readygate-extproc.crt'])
    t.true(certificate(name).verify(ca.publicKey), `${name} is signed by the demo CA`);
  // What Envoy's SAN matchers ask for, and what readygate shows as the Envoys' identity.
  t.regex(certificate('readygate.crt').subjectAltName ?? '', /DNS:readygate(,|$)/);
  t.regex(certificate('readygate-extproc.crt').subjectAltName ?? '', /DNS:readygate-extproc(,|$)/);
  t.is(
    peerIdentity({ subjectaltname: certificate('envoy-gateway.crt').subjectAltName }),
    'spiffe://readygate-demo/ns/gateway/envoy',
  );
});

test.serial(
  'overlays/ready-only (rollout-check SETUP=ready-only) renders setup (b) and passes the same dry run',
  async (t) => {
    const { cluster, objects: base, workDir } = t.context;
    const objects = await renderKind('overlays/ready-only');
    interface PodSpec {
      readinessGates?: unknown[];
      terminationGracePeriodSeconds?: number;
      containers: { args?: string[]; lifecycle?: { preStop?: { exec?: { command?: string[] } } } }[];
    }
    const podSpec = (from: RenderedObject[], name: string): PodSpec =>
      (find(from, 'Deployment', name).spec as { template: { spec: PodSpec } }).template.spec;
    const web = podSpec(objects, 'web');
    t.is(web.readinessGates, undefined, 'no readiness gate');
    t.deepEqual(web.containers[0]?.lifecycle?.preStop?.exec?.command, ['sleep', '5']);
    t.is(web.terminationGracePeriodSeconds, 15);
    const baseArgs = podSpec(base, 'readygate').containers[0]?.args ?? [];
    t.deepEqual(podSpec(objects, 'readygate').containers[0]?.args, [
      ...baseArgs,
      '--terminating=omit',
      '--no-terminating-fallback',
    ]);
    // Nothing else differs from kind/base.
    const names = (from: RenderedObject[]): string[] =>
      from.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort();
    t.deepEqual(names(objects), names(base));
    for (const object of objects) {
      if (object.kind === 'Deployment' && ['web', 'readygate'].includes(object.metadata.name)) continue;
      const same = base.find((o) => o.kind === object.kind && o.metadata.name === object.metadata.name);
      t.deepEqual(object, same, `${object.kind}/${object.metadata.name}`);
    }
    // The two changed Deployments pass the server's strict validation too.
    for (const name of ['web', 'readygate']) {
      const file = path.join(workDir, `ready-only-${name}.yaml`);
      writeFileSync(file, JSON.stringify(find(objects, 'Deployment', name)));
      const result = await run(kubectl, [
        '--kubeconfig',
        cluster.adminKubeconfigPath,
        'apply',
        '--dry-run=server',
        '--validate=strict',
        '-f',
        file,
      ]);
      t.is(result.code, 0, `${name}: ${result.stderr}`);
    }
  },
);
