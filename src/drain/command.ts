/**
 * `readygate drain-wait --pod NAMESPACE/NAME [--timeout 30s]`, for a preStop exec hook: returns 0 once
 * every Envoy connected to readygate has ACKed a version where the pod is DRAINING or gone, so the app
 * shuts down exactly when no new request can reach it. At the timeout it fails naming the Envoys that
 * have not, so the pod's events say which proxy held the shutdown.
 *
 * The waiting happens in readygate (admin `GET /drain-wait`), which hears every ACK as it arrives; this
 * command only long-polls it, retrying while readygate is unreachable (a replica restarting) until the
 * deadline. The deadline holds whatever the server does (src/net.ts `httpGet`): a replica that accepts
 * and never answers costs the timeout, not the pod's whole grace period.
 *
 * Exit codes (docs/cli.md): 0 drained; 1 Envoys still routing at the timeout; 2 bad flags; 3 readygate
 * never answered; 4 no replica knows the pod (a typo must not pass for "drained").
 *
 * With -o json|yaml, outcomes 0 and 1 also print a DrainWaitDocument on stdout (1 keeps its stderr line);
 * 3 and 4 are errors, and print only the stderr line.
 */
import type { DrainWaitConfig } from '../config.js';
import type { CommandContext } from '../cli/context.js';
import { ErrorCode, ExitCode, ReadygateError, errorMessage } from '../errors.js';
import { httpGet } from '../net.js';
import { isDocumentFormat, outputFormat, renderDocument } from '../cli/output.js';

interface DrainWaitBody {
  pod?: string;
  drained?: boolean;
  unknown?: boolean;
  waitedMs?: number;
  waitingOn?: string[];
  nackedBy?: string[];
  error?: string;
}

/** The `-o json|yaml` result; its fields are documented in docs/cli.md and only ever added to. */
export interface DrainWaitDocument {
  readonly pod: string;
  readonly drained: boolean;
  /** One decimal place. */
  readonly waitedSeconds: number;
  /** Node ids of the Envoys still routing new requests to the pod (empty when drained). */
  readonly waitingOn: readonly string[];
  /** Of those, the ones rejecting readygate's config. */
  readonly nackedBy: readonly string[];
}

const RETRY_MS = 250;
/** How often to ask in the last ANSWER_MARGIN_MS before the deadline, when a long poll no longer fits. */
const FINAL_POLL_MS = 100;
/**
 * readygate is asked to answer this much before our deadline, so its 504 (naming the Envoys still
 * routing) arrives in time instead of being cut off with the socket.
 */
const ANSWER_MARGIN_MS = 300;

export async function runDrainWait(config: DrainWaitConfig, context: CommandContext): Promise<number> {
  const format = outputFormat(config);
  const pod = `${config.pod.namespace}/${config.pod.name}`;
  const started = Date.now();
  const deadline = started + config.timeout;
  let last: DrainWaitBody | undefined;
  let lastError: string | undefined;
  while (!context.shutdown.aborted) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const url = new URL('/drain-wait', config.controlPlane);
    url.searchParams.set('pod', pod);
    const longPollMs = Math.max(1, Math.ceil(remaining - ANSWER_MARGIN_MS));
    url.searchParams.set('timeout', `${longPollMs}ms`);
    const asked = Date.now();
    let status: number;
    let body: DrainWaitBody;
    try {
      const answer = await httpGet(url, {
        deadlineMs: remaining,
        signal: context.shutdown,
        headers: { accept: 'application/json' },
      });
      status = answer.status;
      body = parseBody(answer.body);
    } catch (error) {
      lastError = errorMessage(error);
      context.logger.debug({ err: lastError }, 'drain-wait: control plane not answering; retrying');
      await sleep(Math.min(RETRY_MS, Math.max(0, deadline - Date.now())));
      continue;
    }
    if (status === 200 && body.drained === true) {
      const waited = (Date.now() - started) / 1000;
      context.stdout.write(
        isDocumentFormat(format)
          ? renderDocument(format, drainWaitDocument(pod, true, waited, [], []))
          : `${pod} is drained from every Envoy (waited ${waited.toFixed(1)}s)\n`,
      );
      return ExitCode.OK;
    }
    if (status === 404 && body.unknown === true) {
      throw new ReadygateError(
        ErrorCode.POD_UNKNOWN,
        `drain-wait: ${body.error ?? `no readygate replica knows pod ${pod}`} (check --pod: namespace and name)`,
        { exitCode: ExitCode.POD_UNKNOWN },
      );
    }
    if (status === 504) {
      last = body;
      lastError = undefined;
      // Too close to the deadline for a long poll, asking again gets a 1 ms one, answered at once: ask
      // at most every 100 ms until the deadline instead of in a tight loop. Likewise after a 504 well
      // before the long poll's end (a replica capping its wait).
      const left = deadline - Date.now();
      if (left <= ANSWER_MARGIN_MS) await sleep(Math.min(FINAL_POLL_MS, Math.max(0, left)));
      else if (Date.now() - asked < longPollMs / 2) await sleep(Math.min(RETRY_MS, left));
      continue;
    }
    if (status === 503) {
      // Not synced yet (a replica just started): it cannot say anything about the pod; ask again.
      lastError = `${url.origin}/drain-wait answered 503: ${body.error ?? 'not ready'}`;
      await sleep(Math.min(RETRY_MS, Math.max(0, deadline - Date.now())));
      continue;
    }
    throw new ReadygateError(
      ErrorCode.ADMIN_UNREACHABLE,
      `${url.origin}/drain-wait answered ${status}: ${body.error ?? JSON.stringify(body)}`,
      { exitCode: ExitCode.UNKNOWN },
    );
  }
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  if (last === undefined) {
    throw new ReadygateError(
      ErrorCode.ADMIN_UNREACHABLE,
      `drain-wait gave up after ${seconds}s: readygate at ${config.controlPlane} did not answer (${lastError ?? 'shut down while waiting'})`,
      { exitCode: ExitCode.UNKNOWN },
    );
  }
  const waiting = last.waitingOn ?? [];
  const nacked = last.nackedBy ?? [];
  if (isDocumentFormat(format))
    context.stdout.write(renderDocument(format, drainWaitDocument(pod, false, seconds, waiting, nacked)));
  throw new ReadygateError(
    ErrorCode.WAIT_TIMEOUT,
    `drain-wait timed out after ${seconds}s: Envoys still routing new requests to ${pod}: ` +
      (waiting.length > 0 ? waiting.join(', ') : '(unknown)') +
      (nacked.length > 0 ? ` (rejecting config: ${nacked.join(', ')})` : ''),
    { exitCode: ExitCode.FAILED },
  );
}

export function drainWaitDocument(
  pod: string,
  drained: boolean,
  waitedSeconds: number,
  waitingOn: readonly string[],
  nackedBy: readonly string[],
): DrainWaitDocument {
  return { pod, drained, waitedSeconds: Math.round(waitedSeconds * 10) / 10, waitingOn, nackedBy };
}

/** readygate's answers are JSON objects; anything else is an answer we cannot use. */
function parseBody(text: string): DrainWaitBody {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed === 'object' && parsed !== null) return parsed;
  } catch {
    // fall through
  }
  return { error: `not a JSON object: ${text.slice(0, 200)}` };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
