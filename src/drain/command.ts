/**
 * `readygate drain-wait --pod NAMESPACE/NAME [--timeout 30s]`, for a preStop exec hook: returns 0 once
 * every Envoy connected to readygate has ACKed a version where the pod is DRAINING or gone, so the app
 * shuts down exactly when no new request can reach it. At the timeout it fails naming the Envoys that
 * have not, so the pod's events say which proxy held the shutdown.
 *
 * The waiting happens in readygate (admin `GET /drain-wait`), which hears every ACK as it arrives; this
 * command only long-polls it, retrying while readygate is unreachable (a replica restarting) until the
 * deadline.
 */
import type { DrainWaitConfig } from '../config.js';
import type { CommandContext } from '../cli/context.js';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';

interface DrainWaitBody {
  pod?: string;
  drained?: boolean;
  waitedMs?: number;
  waitingOn?: string[];
  nackedBy?: string[];
  error?: string;
}

const RETRY_MS = 250;

export async function runDrainWait(config: DrainWaitConfig, context: CommandContext): Promise<number> {
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
    url.searchParams.set('timeout', `${Math.max(1, Math.ceil(remaining))}ms`);
    try {
      const response = await fetch(url, {
        signal: AbortSignal.any([AbortSignal.timeout(remaining + 2000), context.shutdown]),
      });
      const body = (await response.json()) as DrainWaitBody;
      if (response.status === 200 && body.drained === true) {
        context.stdout.write(
          `${pod} is drained from every Envoy (waited ${((Date.now() - started) / 1000).toFixed(1)}s)\n`,
        );
        return 0;
      }
      if (response.status === 504) {
        last = body;
        lastError = undefined;
        continue;
      }
      throw new ReadygateError(
        ErrorCode.ADMIN_UNREACHABLE,
        `${url.origin}/drain-wait answered ${response.status}: ${body.error ?? JSON.stringify(body)}`,
      );
    } catch (error) {
      if (error instanceof ReadygateError) throw error;
      lastError = errorMessage(error);
      context.logger.debug({ err: lastError }, 'drain-wait: control plane not answering; retrying');
      await sleep(Math.min(RETRY_MS, Math.max(0, deadline - Date.now())));
    }
  }
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  if (last === undefined && lastError !== undefined) {
    throw new ReadygateError(
      ErrorCode.ADMIN_UNREACHABLE,
      `drain-wait gave up after ${seconds}s: readygate at ${config.controlPlane} did not answer (${lastError})`,
    );
  }
  const waiting = last?.waitingOn ?? [];
  const nacked = last?.nackedBy ?? [];
  throw new ReadygateError(
    ErrorCode.WAIT_TIMEOUT,
    `drain-wait timed out after ${seconds}s: Envoys still routing new requests to ${pod}: ` +
      (waiting.length > 0 ? waiting.join(', ') : '(unknown)') +
      (nacked.length > 0 ? ` (rejecting config: ${nacked.join(', ')})` : ''),
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
