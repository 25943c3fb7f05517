/**
 * The stage for one hostile-client attack on the real ADS server (test/helpers/ads-server-process.ts,
 * a process of its own so its RSS is its own): a legitimate ADS client watches an endpoint that is
 * edited every EDIT_INTERVAL_MS, the attack runs, and the figures the suite asserts are collected: the
 * server's RSS growth over its warmed-up baseline, every edit's delay from the edit to the legitimate
 * client's receipt, the attacker connections' cut-off times, the limits the server reported crossed and
 * its log lines about them.
 *
 * Attacks run in this process, so they yield to the event loop between bounded batches: the legitimate
 * client's receipts are timed on the same loop.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '../../src/xds/resource-types.js';
import {
  editedAddress,
  type ServerCommand,
  type ServerMessage,
  type ServerStats,
} from '../helpers/ads-server-protocol.js';
import type { Http2Limits } from '../../src/http2/limits.js';
import { type RawH2Client } from '../helpers/raw-h2.js';
import { unpack, XdsTestClient } from '../helpers/xds-client.js';

export const EDIT_INTERVAL_MS = 150;
const SERVER_SCRIPT = fileURLToPath(new URL('../helpers/ads-server-process.ts', import.meta.url));
const CLUSTER = 'default/web:http';

/** What one attacker connection did: when it crossed its limit and when it was cut off. */
export interface AttackerOutcome {
  /** performance.now() when the frame (or the wait) that crossed the limit was written (ended). */
  readonly crossedAt: number;
  readonly client: RawH2Client;
}

export interface ArenaFigures {
  /** Server RSS at its highest during and after the attack, minus its baseline, in bytes. */
  readonly rssGrowth: number;
  /** Per edit, ms from the edit to the legitimate client's receipt; Infinity if it never came. */
  readonly delays: readonly number[];
  /** The server's counts of connections cut off, by limit. */
  readonly limits: Readonly<Record<string, number>>;
  /** The server's log lines about connections it ended (limits and protocol errors). */
  readonly cutOffLogLines: number;
  /** The server process was alive at the end and answered. */
  readonly serverAlive: boolean;
}

class ServerProcess {
  readonly child: ChildProcess;
  readonly stderr: string[] = [];
  port = 0;
  exited = false;
  readonly #statsWaiters: Array<(stats: ServerStats) => void> = [];
  readonly #ready: Promise<void>;

  constructor(limits: Partial<Http2Limits>) {
    this.child = fork(SERVER_SCRIPT, [JSON.stringify(limits)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let partial = '';
    this.child.stderr?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      this.stderr.push(...lines);
    });
    this.child.on('exit', () => {
      this.exited = true;
    });
    this.#ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error('the ADS server process did not start in 30 s'));
      }, 30_000);
      this.child.on('message', (message: ServerMessage) => {
        if ('ready' in message) {
          clearTimeout(timer);
          this.port = message.ready;
          resolve();
        } else {
          this.#statsWaiters.shift()?.(message.stats);
        }
      });
      this.child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the ADS server process exited with ${code}: ${this.stderr.join('\n')}`));
      });
    });
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  command(command: ServerCommand): void {
    if (!this.exited) this.child.send(command);
  }

  /** RSS and limits; rejects if the server does not answer within `timeoutMs`. */
  stats(timeoutMs = 5000): Promise<ServerStats> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no stats within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#statsWaiters.push((stats) => {
        clearTimeout(timer);
        resolve(stats);
      });
      this.command({ stats: true });
    });
  }

  stop(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

interface Cla {
  endpoints?: Array<{
    lb_endpoints?: Array<{ endpoint?: { address?: { socket_address?: { address?: string } } } }>;
  }>;
}

/** The legitimate client: subscribes to the edited cluster's EDS, ACKs every response, times edits. */
class LegitimateClient {
  readonly #client: XdsTestClient;
  /** performance.now() of each edit, by edit number; the receipt fills in its delay. */
  readonly #editedAt = new Map<number, number>();
  readonly delays = new Map<number, number>();
  #closed = false;
  #stream: { close(): void } | undefined;

  constructor(port: number) {
    this.#client = new XdsTestClient(`127.0.0.1:${port}`);
  }

  async start(): Promise<void> {
    const stream = this.#client.sotw();
    this.#stream = stream;
    stream.send({
      node: { id: 'legitimate', cluster: 'test' },
      type_url: TypeUrl.ENDPOINT,
      resource_names: [CLUSTER],
    });
    const first = await stream.next(10_000);
    stream.send({
      type_url: TypeUrl.ENDPOINT,
      resource_names: [CLUSTER],
      version_info: first.version_info ?? '',
      response_nonce: first.nonce ?? '',
    });
    // Runs until the stream ends; close() ends it.
    void (async () => {
      while (!this.#closed) {
        let response;
        try {
          response = await stream.next(60_000);
        } catch {
          return;
        }
        const receivedAt = performance.now();
        const cla = unpack<Cla>(response.resources[0]!);
        const address = cla.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address?.socket_address?.address;
        const edit = [...this.#editedAt.keys()].find((n) => editedAddress(n) === address);
        if (edit !== undefined) {
          // A later edit's response also answers every earlier one still waiting.
          for (const [n, at] of this.#editedAt) {
            if (n <= edit && !this.delays.has(n)) this.delays.set(n, receivedAt - at);
          }
        }
        stream.send({
          type_url: TypeUrl.ENDPOINT,
          resource_names: [CLUSTER],
          version_info: response.version_info ?? '',
          response_nonce: response.nonce ?? '',
        });
      }
    })();
  }

  edited(n: number, at: number): void {
    this.#editedAt.set(n, at);
  }

  close(): void {
    this.#closed = true;
    this.#stream?.close();
    this.#client.close();
  }
}

/**
 * Runs `attack` against a fresh ADS server with `limits`, with the legitimate client watching edits
 * from before it starts until `settleMs` after it ends, and returns the figures.
 */
export async function inArena(
  limits: Partial<Http2Limits>,
  attack: (port: number) => Promise<readonly AttackerOutcome[]>,
  settleMs = 1200,
): Promise<{ figures: ArenaFigures; outcomes: readonly AttackerOutcome[] }> {
  const server = new ServerProcess(limits);
  let legit: LegitimateClient | undefined;
  let outcomes: readonly AttackerOutcome[] = [];
  try {
    await server.ready();
    legit = new LegitimateClient(server.port);
    await legit.start();
    const watcher = legit;
    let edit = 0;
    let editing = true;
    const edits = (async () => {
      while (editing) {
        edit += 1;
        watcher.edited(edit, performance.now());
        server.command({ edit });
        await new Promise((resolve) => setTimeout(resolve, EDIT_INTERVAL_MS));
      }
    })();
    // Warm up: the first edits reach the client before the baseline is taken.
    const warmUntil = performance.now() + 5000;
    while (watcher.delays.size < 3 && performance.now() < warmUntil)
      await new Promise((r) => setTimeout(r, 20));
    const baseline = (await server.stats()).rss;
    let peak = baseline;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          peak = Math.max(peak, (await server.stats(2000)).rss);
        } catch {
          // A missed sample shows as a dead server below, not here.
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const firstAttackEdit = edit + 1;
    outcomes = await attack(server.port);
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    editing = false;
    await edits;
    const lastEdit = edit;
    // The last edit gets its fair time to arrive.
    const deadline = performance.now() + 2000;
    while (!watcher.delays.has(lastEdit) && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    sampling = false;
    await sampler;
    let serverAlive = false;
    let limitsCrossed: Readonly<Record<string, number>> = {};
    try {
      const final = await server.stats();
      peak = Math.max(peak, final.rss);
      limitsCrossed = final.limits;
      serverAlive = !server.exited;
    } catch {
      serverAlive = false;
    }
    const delays: number[] = [];
    for (let n = firstAttackEdit; n <= lastEdit; n++) delays.push(watcher.delays.get(n) ?? Infinity);
    const cutOffLogLines = server.stderr.filter((line) => line.includes('xds connection')).length;
    return {
      figures: { rssGrowth: peak - baseline, delays, limits: limitsCrossed, cutOffLogLines, serverAlive },
      outcomes,
    };
  } finally {
    legit?.close();
    for (const outcome of outcomes) outcome.client.destroy();
    server.stop();
  }
}

/**
 * Writes `frame(i)` for i = 0, 1, ... in batches of `batch`, yielding between batches, until the
 * connection is cut off, `maxFrames` are written or `maxMs` pass. Returns when the frame with index
 * `crossing` (the first one past the limit) was written.
 */
export async function flood(
  client: RawH2Client,
  frame: (i: number) => Buffer,
  options: { crossing: number; batch?: number; maxFrames?: number; maxMs?: number },
): Promise<number> {
  const { crossing, batch = 100, maxFrames = 5_000_000, maxMs = 3000 } = options;
  const until = performance.now() + maxMs;
  let crossedAt = Number.NaN;
  for (let i = 0; i < maxFrames && client.cutOff === undefined && performance.now() < until;) {
    const frames: Buffer[] = [];
    const end = Math.min(maxFrames, i + batch);
    const first = i;
    for (; i < end; i++) frames.push(frame(i));
    client.send(...frames);
    if (first <= crossing && crossing < end) crossedAt = performance.now();
    if (client.socket.writableNeedDrain) {
      // The server stopped reading (as it should once it cut us off): wait for it or for the close.
      await new Promise((resolve) => setTimeout(resolve, 10));
    } else {
      await yieldToLoop();
    }
  }
  return crossedAt;
}

/** A frame of a type HTTP/2 does not define: the server ignores it (RFC 9113 §4.1). */
const UNKNOWN_FRAME = Buffer.from([0, 0, 0, 0xfa, 0, 0, 0, 0, 0]);

/**
 * Waits until every attacker is cut off or `timeoutMs` passes. An attacker that does not read learns
 * of the close only by writing, so each one still open writes an ignored frame every 10 ms.
 */
export async function allCutOff(outcomes: readonly AttackerOutcome[], timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const open = outcomes.filter((o) => o.client.cutOff === undefined);
    if (open.length === 0 || performance.now() > deadline) return;
    for (const outcome of open) if (!outcome.client.reads) outcome.client.send(UNKNOWN_FRAME);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
