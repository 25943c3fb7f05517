/**
 * `readygate version` (and `readygate --version`): what this build is and what it speaks, for bug reports
 * and for checking a deployment against the Envoy it runs with. The package version comes from
 * package.json, the commit from dist/build-info.json (written by `npm run build`, scripts/build-info.mjs;
 * "unknown" outside a git checkout), the Envoy version from the pin in scripts/envoy-binary.sh, which is
 * the Envoy every integration test runs against. All three are files shipped with the package.
 */
import { readFile } from 'node:fs/promises';
import type { VersionConfig } from '../config.js';
import { ExitCode } from '../errors.js';
import { SERVED_TYPE_URLS, shortTypeName } from '../xds/resource-types.js';
import type { CommandContext } from './context.js';
import { table } from './table.js';
import { isDocumentFormat, outputFormat, renderDocument } from './output.js';

/**
 * The gRPC services readygate serves, spelled out here rather than imported: their modules load the xDS
 * server and grpc-js, which `version` does not need. test/unit/version.test.ts checks they match.
 */
export const SERVED_XDS_METHODS = [
  'envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
  'envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
] as const;
export const SERVED_EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

/** The `-o json|yaml` document; its fields are documented in docs/cli.md and only ever added to. */
export interface VersionDocument {
  readonly readygate: string;
  /** 40 hex digits, or "unknown" (not built from a git checkout). */
  readonly commit: string;
  readonly gitTreeState: 'clean' | 'dirty' | 'unknown';
  readonly node: string;
  readonly platform: string;
  /** The Envoy release the project's tests run against. */
  readonly envoyTested: string;
  readonly xds: { readonly methods: readonly string[]; readonly typeUrls: readonly string[] };
  readonly extProc: { readonly service: string };
}

export interface BuildFacts {
  readonly packageVersion: string;
  readonly commit: string;
  readonly gitTreeState: VersionDocument['gitTreeState'];
  readonly envoyTested: string;
  readonly node: string;
  readonly platform: string;
}

export function versionDocument(facts: BuildFacts): VersionDocument {
  return {
    readygate: facts.packageVersion,
    commit: facts.commit,
    gitTreeState: facts.gitTreeState,
    node: facts.node,
    platform: facts.platform,
    envoyTested: facts.envoyTested,
    xds: { methods: [...SERVED_XDS_METHODS], typeUrls: [...SERVED_TYPE_URLS] },
    extProc: { service: SERVED_EXT_PROC_SERVICE },
  };
}

/** `table`: one line per fact; `wide` adds the full method paths and type URLs. */
export function formatVersion(doc: VersionDocument, wide: boolean): string {
  const types = doc.xds.typeUrls.map((url) => shortTypeName(url).toUpperCase()).join(', ');
  const rows = [
    ['readygate', doc.readygate],
    ['commit', doc.commit === 'unknown' ? 'unknown' : `${doc.commit} (${doc.gitTreeState})`],
    ['node', `${doc.node} ${doc.platform}`],
    ['envoy', `${doc.envoyTested} (tested against)`],
    ['xds', `v3 ADS, SotW and delta: ${types}`],
    ['ext_proc', `v3 ${doc.extProc.service}`],
  ];
  if (wide) {
    for (const method of doc.xds.methods) rows.push(['xds method', method]);
    for (const url of doc.xds.typeUrls) rows.push(['xds type', url]);
  }
  return table(rows).join('\n') + '\n';
}

export async function runVersion(config: VersionConfig, context: CommandContext): Promise<number> {
  const format = outputFormat(config);
  const doc = versionDocument(await buildFacts());
  context.stdout.write(
    isDocumentFormat(format) ? renderDocument(format, doc) : formatVersion(doc, format === 'wide'),
  );
  return ExitCode.OK;
}

export async function buildFacts(): Promise<BuildFacts> {
  const [packageVersion, buildInfo, envoyTested] = await Promise.all([
    readPackageVersion(),
    readBuildInfo(),
    readPinnedEnvoyVersion(),
  ]);
  return {
    packageVersion,
    ...buildInfo,
    envoyTested,
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
  };
}

// Paths are two levels up from both src/cli/ and dist/cli/: the package root.
const PACKAGE_JSON = new URL('../../package.json', import.meta.url);
const BUILD_INFO = new URL('../../dist/build-info.json', import.meta.url);
const ENVOY_PIN = new URL('../../scripts/envoy-binary.sh', import.meta.url);

let cachedPackageVersion: string | undefined;

/** package.json's version, or "unknown" if it cannot be read (never a reason for a command to fail). */
export async function readPackageVersion(): Promise<string> {
  if (cachedPackageVersion !== undefined) return cachedPackageVersion;
  try {
    const manifest = JSON.parse(await readFile(PACKAGE_JSON, 'utf8')) as { version?: unknown };
    cachedPackageVersion = typeof manifest.version === 'string' ? manifest.version : 'unknown';
  } catch {
    cachedPackageVersion = 'unknown';
  }
  return cachedPackageVersion;
}

async function readBuildInfo(): Promise<Pick<BuildFacts, 'commit' | 'gitTreeState'>> {
  try {
    const info = JSON.parse(await readFile(BUILD_INFO, 'utf8')) as {
      commit?: unknown;
      gitTreeState?: unknown;
    };
    const commit =
      typeof info.commit === 'string' && /^[0-9a-f]{40}$/.test(info.commit) ? info.commit : 'unknown';
    const state = info.gitTreeState;
    return {
      commit,
      gitTreeState: commit !== 'unknown' && (state === 'clean' || state === 'dirty') ? state : 'unknown',
    };
  } catch {
    // Not built (running from source), or built without the build-info step.
    return { commit: 'unknown', gitTreeState: 'unknown' };
  }
}

/** The default of ENVOY_VERSION in scripts/envoy-binary.sh: `${READYGATE_ENVOY_VERSION:-1.36.4}`. */
export function pinnedEnvoyVersion(script: string): string | undefined {
  return /^ENVOY_VERSION="\$\{READYGATE_ENVOY_VERSION:-(\d+\.\d+\.\d+)\}"$/m.exec(script)?.[1];
}

async function readPinnedEnvoyVersion(): Promise<string> {
  try {
    return pinnedEnvoyVersion(await readFile(ENVOY_PIN, 'utf8')) ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
