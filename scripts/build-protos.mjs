// Compiles the Envoy protos readygate uses, taken from the pinned @grpc/grpc-js-xds package (never copied
// into the repo), into one JSON descriptor bundle that the runtime loads without touching .proto files.
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const depsRoot = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const protobufDir = path.dirname(require.resolve('protobufjs/package.json'));
const includeDirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) =>
  path.join(depsRoot, d),
);

// Entry points; everything they import comes along.
export const ENTRY_PROTOS = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/service/ext_proc/v3/external_processor.proto',
  'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  // A sidecar's outbound listener carries the ext_proc 5xx filter behind a status matcher (translate-outbound.ts).
  'envoy/extensions/common/matching/v3/extension_matcher.proto',
  'envoy/extensions/filters/common/matcher/action/v3/skip_action.proto',
  'envoy/type/matcher/v3/http_inputs.proto',
  // Its routes retry refused connects on another host, as the shipped gateways do.
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'google/rpc/status.proto',
];

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => {
  for (const dir of includeDirs) {
    const candidate = path.join(dir, target);
    if (existsSync(candidate)) return candidate;
  }
  // protobufjs ships descriptor.proto as a file and the other well-known types built in.
  const bundled = path.join(protobufDir, target);
  return existsSync(bundled) ? bundled : target;
};
root.loadSync(ENTRY_PROTOS, { keepCase: true });
root.resolveAll();

// protobufjs defines its built-in well-known types with camelCase field names even under keepCase, so
// Struct values would be `stringValue` while every Envoy field is snake_case. Normalise them so the whole
// bundle speaks the protos' own names.
const bundle = root.toJSON();
const wellKnown = bundle.nested.google.nested.protobuf.nested;
const snake = (name) => name.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
for (const typeName of ['Struct', 'Value', 'ListValue']) {
  const type = wellKnown[typeName];
  type.fields = Object.fromEntries(Object.entries(type.fields).map(([k, v]) => [snake(k), v]));
  for (const oneof of Object.values(type.oneofs ?? {})) oneof.oneof = oneof.oneof.map(snake);
}

const outDir = path.join(repoRoot, 'generated');
mkdirSync(outDir, { recursive: true });
const outFile = path.join(outDir, 'envoy-protos.json');
writeFileSync(outFile, JSON.stringify(bundle));
console.log(`build-protos: ${ENTRY_PROTOS.length} entry protos -> ${path.relative(repoRoot, outFile)}`);
