/**
 * GET requests to the Kubernetes API with deadlines that hold: the I/O shell under the list+watch loop
 * (kubernetes-watch.ts).
 *
 * client-node's own list and watch calls have no deadline before the response starts (an API that
 * accepts the connection and never answers, a TLS handshake that stalls) and its watch cannot be aborted
 * until the response headers arrive. Here every request is a plain node:http(s) request with the
 * credentials, CA and agent (proxies included) the KubeConfig gives through its public
 * `applyToHTTPSOptions`, a timer that destroys it if no response head arrives in time, and an
 * AbortSignal that ends it at any point. Timers, not AbortSignal.timeout: a plain timer cannot be
 * collected while it is pending.
 */
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { errorMessage } from '../errors.js';
import { withDeadline } from '../net.js';

/** A failed API request: HTTP status when the API answered, `timeout` when it did not in time. */
export class KubernetesApiError extends Error {
  readonly statusCode: number | undefined;
  readonly timeout: boolean;

  constructor(message: string, options: { statusCode?: number; timeout?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KubernetesApiError';
    this.statusCode = options.statusCode;
    this.timeout = options.timeout ?? false;
  }
}

export interface ApiGet {
  /** API path, e.g. `/api/v1/namespaces/default/services`. */
  readonly path: string;
  readonly query?: Readonly<Record<string, string | undefined>>;
  /** Ends the request (and the response stream) whenever it fires. */
  readonly signal: AbortSignal;
  /** Deadline for the response head: connect, TLS, authentication and the API's first answer. */
  readonly responseTimeoutMs: number;
}

/** The API server of the current context, for messages. */
export function apiServerOf(kubeConfig: KubeConfig): string {
  return kubeConfig.getCurrentCluster()?.server ?? '(no server in the kubeconfig)';
}

/**
 * Sends a GET and resolves with the response once its head arrived with status 200; rejects with a
 * KubernetesApiError for any other status (message from the API's Status object), a timeout or a
 * transport error. The caller owns the response stream and must consume or destroy it.
 */
export async function apiGet(kubeConfig: KubeConfig, request: ApiGet): Promise<http.IncomingMessage> {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new KubernetesApiError('the kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + request.path);
  for (const [key, value] of Object.entries(request.query ?? {})) {
    if (value !== undefined) url.searchParams.set(key, value);
  }
  const options: https.RequestOptions = { headers: { accept: 'application/json' } };
  // Credentials can come from an exec plugin or a token file; bound that too.
  await withApiDeadline(
    kubeConfig.applyToHTTPSOptions(options),
    request.responseTimeoutMs,
    'preparing credentials',
  );
  request.signal.throwIfAborted();
  const transport = url.protocol === 'http:' ? http : https;
  return new Promise((resolve, reject) => {
    const outgoing = transport.request(url, { ...options, method: 'GET', signal: request.signal });
    const timer = setTimeout(() => {
      outgoing.destroy(
        new KubernetesApiError(`no response within ${formatMs(request.responseTimeoutMs)}`, {
          timeout: true,
        }),
      );
    }, request.responseTimeoutMs);
    outgoing.once('response', (response) => {
      clearTimeout(timer);
      const status = response.statusCode ?? 0;
      if (status === 200) {
        resolve(response);
        return;
      }
      // The API explains refusals in a Status object; read a bounded piece of it for the message.
      readBounded(response, 64 * 1024, request.responseTimeoutMs).then(
        (body) => {
          reject(new KubernetesApiError(`HTTP ${status}: ${statusMessage(body)}`, { statusCode: status }));
        },
        () => {
          reject(new KubernetesApiError(`HTTP ${status}`, { statusCode: status }));
        },
      );
    });
    outgoing.on('error', (error) => {
      clearTimeout(timer);
      reject(
        error instanceof KubernetesApiError
          ? error
          : new KubernetesApiError(errorMessage(error), { cause: error }),
      );
    });
    outgoing.end();
  });
}

/** Reads a whole response body as JSON, within `deadlineMs` of now. */
export async function readJson(response: http.IncomingMessage, deadlineMs: number): Promise<unknown> {
  const text = await readBounded(response, Number.POSITIVE_INFINITY, deadlineMs);
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new KubernetesApiError(`the API answered with a body that is not JSON: ${errorMessage(error)}`);
  }
}

/** Calls `onLine` for every newline-terminated line of a streaming response (a watch). */
export function forEachLine(
  response: http.IncomingMessage,
  maxLineBytes: number,
  onLine: (line: string) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let pending = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      pending += chunk;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.trim() !== '') onLine(line);
        newline = pending.indexOf('\n');
      }
      if (pending.length > maxLineBytes) {
        response.destroy(
          new KubernetesApiError(`a watch event longer than ${maxLineBytes} bytes; dropping the watch`),
        );
      }
    });
    response.once('end', resolve);
    response.on('error', reject);
    response.once('close', () => {
      // Destroyed without an error (aborted by us): settle like an end.
      resolve();
    });
  });
}

function readBounded(response: http.IncomingMessage, maxBytes: number, deadlineMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      response.destroy(
        new KubernetesApiError(`the response did not complete within ${formatMs(deadlineMs)}`, {
          timeout: true,
        }),
      );
    }, deadlineMs);
    response.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        response.destroy();
        return;
      }
      chunks.push(chunk);
    });
    response.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    response.on('error', (error) => {
      clearTimeout(timer);
      reject(error instanceof KubernetesApiError ? error : new KubernetesApiError(errorMessage(error)));
    });
    response.once('close', () => {
      clearTimeout(timer);
      if (!response.complete) reject(new KubernetesApiError('the response ended early'));
    });
  });
}

function statusMessage(body: string): string {
  try {
    const status = JSON.parse(body) as { message?: unknown; reason?: unknown };
    if (typeof status.message === 'string') return status.message;
    if (typeof status.reason === 'string') return status.reason;
  } catch {
    // not a Status object
  }
  return body.slice(0, 200) || '(no message)';
}

function withApiDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(
    promise,
    ms,
    what,
    () => new KubernetesApiError(`${what} took longer than ${formatMs(ms)}`, { timeout: true }),
  );
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
