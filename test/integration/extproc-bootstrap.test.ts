/**
 * The shipped gateway bootstrap (envoy/gateway-ads-extproc.yaml) is accepted by the pinned Envoy, and its
 * ext_proc wiring is exactly the one the integration tests prove with envoy/extproc-failures.template.yaml.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import test from 'ava';
import { parse as parseYaml } from 'yaml';
import { EXTPROC_RESPONSE_ATTRIBUTES } from '../../src/extproc/attributes.js';
import { envoyBinary, loadBootstrapTemplate } from '../helpers/envoy-process.js';

const execFileAsync = promisify(execFile);
const GATEWAY = new URL('../../envoy/gateway-ads-extproc.yaml', import.meta.url);

type Json = Record<string, unknown>;

function extprocParts(bootstrap: Json): Json {
  const runtime = (bootstrap['layered_runtime'] as { layers: Json[] }).layers;
  const statics = bootstrap['static_resources'] as { listeners: Json[]; clusters: Json[] };
  const listener = statics.listeners[0] as { filter_chains: { filters: { typed_config: Json }[] }[] };
  const hcm = listener.filter_chains[0]!.filters[0]!.typed_config;
  const cluster = structuredClone(statics.clusters.find((c) => c['name'] === 'readygate_extproc'));
  // Addresses differ on purpose (fixed sidecar port vs. a test's free port).
  delete (cluster as { load_assignment?: unknown } | undefined)?.load_assignment;
  return {
    runtime,
    localReplyConfig: hcm['local_reply_config'],
    httpFilters: hcm['http_filters'],
    cluster,
  };
}

test('Envoy accepts envoy/gateway-ads-extproc.yaml (--mode validate)', async (t) => {
  const binary = await envoyBinary();
  const { stdout, stderr } = await execFileAsync(
    binary,
    ['--mode', 'validate', '-c', GATEWAY.pathname, '--disable-hot-restart'],
    { timeout: 60_000 },
  );
  t.regex(`${stdout}${stderr}`, /configuration '.*gateway-ads-extproc\.yaml' OK/);
});

test('the gateway bootstrap wires ext_proc exactly like the tested template', (t) => {
  const upstreamPlaceholders: Record<string, string | number> = {};
  for (const name of [
    'OK',
    'APP_ERROR',
    'TERMINATING',
    'REFUSED',
    'CLOSE',
    'GARBAGE',
    'SILENT',
    'H2_RESET',
    'RESET_AFTER',
  ]) {
    upstreamPlaceholders[`${name}_HOST`] = '127.0.0.1';
    upstreamPlaceholders[`${name}_PORT`] = 1;
  }
  const gateway = parseYaml(readFileSync(GATEWAY, 'utf8')) as Json;
  const template = loadBootstrapTemplate('envoy/extproc-failures.template.yaml', {
    ADMIN_PORT: 0,
    LISTENER_PORT: 1,
    EXTPROC_HOST: '127.0.0.1',
    EXTPROC_PORT: 1,
    EXTPROC_RESPONSE_ATTRIBUTES,
    ...upstreamPlaceholders,
  });
  t.deepEqual(extprocParts(gateway), extprocParts(template));
});
