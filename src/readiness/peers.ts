/**
 * Several readygate replicas: each Envoy holds one ADS stream to one replica, so no replica alone sees
 * every Envoy. Before the leader turns a gate True, and before /drain-wait answers "drained", the other
 * replicas are asked for *their local* verdicts (`GET /debug/gates?pod=NS/NAME` on their admin port, which
 * never asks further, so there is no recursion). A peer that does not answer counts as not agreeing:
 * a replica whose Envoys are unknown cannot be vouched for, and the gate timeout bounds the wait.
 *
 * Peers come from a function, so discovery is pluggable: `dnsPeers` resolves a headless Service (ready
 * replicas only, no extra RBAC); `staticPeers` is a fixed list (tests, static setups).
 */
import { promises as dns } from 'node:dns';
import { networkInterfaces } from 'node:os';
import { errorMessage } from '../errors.js';
import { httpGet } from '../net.js';
import type { PodKey } from './routing-history.js';
import type { Verdict } from './verdicts.js';

/** Admin base URLs of the OTHER replicas (e.g. http://10.0.3.7:9102). */
export type PeerList = () => Promise<readonly string[]>;

export function staticPeers(urls: readonly string[]): PeerList {
  return () => Promise.resolve(urls);
}

/**
 * Peers from a headless Service's DNS name (A/AAAA records = ready replica pod IPs), minus this replica's
 * own addresses. `port` is the admin port.
 */
export function dnsPeers(options: { name: string; port: number; self?: readonly string[] }): PeerList {
  const self = new Set(options.self ?? ownAddresses());
  return async () => {
    const [v4, v6] = await Promise.all([
      dns.resolve4(options.name).catch(() => [] as string[]),
      dns.resolve6(options.name).catch(() => [] as string[]),
    ]);
    return [
      ...v4.map((a) => `http://${a}:${options.port}`),
      ...v6.map((a) => `http://[${a}]:${options.port}`),
    ].filter((url) => !self.has(new URL(url).hostname.replace(/^\[|\]$/g, '')));
  };
}

function ownAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .map((info) => info?.address)
    .filter((address): address is string => typeof address === 'string');
}

export interface PeerResult {
  readonly ok: boolean;
  readonly waitingOn: readonly string[];
  readonly nackedBy: readonly string[];
  /** Envoys (node ids) on the peers whose ACKed version routes new requests to the pod (gate). */
  readonly ackedBy: readonly string[];
  /** Peers that did not answer (named as `peer <url>` in waitingOn too). */
  readonly unreachable: readonly string[];
  /** Peers whose history or source mentions the pod at all (drain-wait tells a typo from a drained pod). */
  readonly knownBy: readonly string[];
}

interface PeerBody {
  known?: boolean;
  gate?: Partial<Verdict>;
  drain?: Partial<Verdict>;
}

/** Per peer. A peer answers /debug/gates from memory; one that takes longer is stuck, not busy. */
export const DEFAULT_PEER_TIMEOUT_MS = 2000;

/**
 * Asks every peer for its local gate or drain verdict on `pod`. For the gate, a peer whose verdict is
 * `not-routed` has not built the pod into its EDS yet, which is not agreement either. Each question has
 * a deadline that holds (src/net.ts `httpGet`): a peer that accepts and never answers is unreachable
 * after `timeoutMs`, never a hang.
 */
export async function askPeers(
  peers: PeerList,
  kind: 'gate' | 'drain',
  pod: PodKey,
  timeoutMs = DEFAULT_PEER_TIMEOUT_MS,
): Promise<PeerResult> {
  let urls: readonly string[];
  try {
    urls = await peers();
  } catch (error) {
    return {
      ok: false,
      waitingOn: [`peers: ${errorMessage(error)}`],
      nackedBy: [],
      ackedBy: [],
      unreachable: [],
      knownBy: [],
    };
  }
  const answers = await Promise.all(
    urls.map(async (base) => {
      try {
        const url = new URL('/debug/gates', base);
        url.searchParams.set('pod', pod);
        const answer = await httpGet(url, { deadlineMs: timeoutMs, headers: { accept: 'application/json' } });
        if (answer.status !== 200) throw new Error(`HTTP ${answer.status}`);
        const body = JSON.parse(answer.body) as PeerBody;
        const verdict = body[kind];
        if (!verdict || typeof verdict.ok !== 'boolean') throw new Error('no verdict in the answer');
        // Peers from before `known` existed: a verdict that looked at clusters knows the pod.
        const known = body.known ?? (body.drain?.clusters?.length ?? 0) > 0;
        return { base, verdict, known };
      } catch (error) {
        return { base, error: errorMessage(error) };
      }
    }),
  );
  const waitingOn = new Set<string>();
  const nackedBy = new Set<string>();
  const ackedBy = new Set<string>();
  const unreachable: string[] = [];
  const knownBy: string[] = [];
  let ok = true;
  for (const answer of answers) {
    if ('error' in answer) {
      ok = false;
      unreachable.push(answer.base);
      waitingOn.add(`peer ${answer.base}`);
      continue;
    }
    const { verdict } = answer;
    if (answer.known) knownBy.push(answer.base);
    if (!verdict.ok) ok = false;
    if (!verdict.ok && (verdict.waitingOn?.length ?? 0) === 0)
      waitingOn.add(`peer ${answer.base} (${verdict.reason ?? 'not ready'})`);
    for (const node of verdict.waitingOn ?? []) waitingOn.add(node);
    for (const node of verdict.nackedBy ?? []) nackedBy.add(node);
    for (const node of verdict.ackedBy ?? []) ackedBy.add(node);
  }
  return {
    ok,
    waitingOn: [...waitingOn].sort(),
    nackedBy: [...nackedBy].sort(),
    ackedBy: [...ackedBy].sort(),
    unreachable,
    knownBy,
  };
}
