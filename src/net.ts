/**
 * Address parsing shared by every listener (--xds-address, --admin-address, --address) and the config
 * validation, so a flag and a library caller accept exactly the same addresses; and `httpGet`, the one
 * way readygate's commands and peer queries call an admin endpoint, with a deadline that holds.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { type AddressInfo, isIP, type Server } from 'node:net';
import { ErrorCode, ReadygateError } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
  /** `host:port`, IPv6 hosts bracketed: what gRPC's bind and Node's listen helpers expect. */
  readonly address: string;
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/** Parses `HOST:PORT` or `[IPv6]:PORT` (port 0 = any free port); returns what is wrong as a string. */
export function checkHostPort(text: string): HostPort | string {
  const problem = `"${text}" is not HOST:PORT (example: 127.0.0.1:18000, [::1]:18000)`;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  const plain = /^([^:[\]]+):(\d+)$/.exec(text);
  const match = bracketed ?? plain;
  if (!match) return problem;
  const host = match[1] ?? '';
  const portText = match[2] ?? '';
  if (bracketed && isIP(host) !== 6) return `"${text}": "${host}" is not an IPv6 address`;
  if (plain && isIP(host) === 0 && !HOSTNAME.test(host))
    return `"${text}": "${host}" is not a host name or IP address`;
  const port = Number(portText);
  if (portText.length > 5 || port > 65535) return `"${text}": port ${portText} is out of range 0-65535`;
  return Object.freeze({ host, port, address: formatHostPort(host, port) });
}

/** Like checkHostPort, but throws a CONFIG_INVALID ReadygateError. */
export function parseHostPort(text: string): HostPort {
  const result = checkHostPort(text);
  if (typeof result === 'string')
    throw new ReadygateError(ErrorCode.CONFIG_INVALID, `invalid address ${result}`);
  return result;
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** An answer read whole by `httpGet`. */
export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

export interface HttpGetOptions {
  /** The whole exchange (connect, send, headers, body) must finish within this; then the socket is destroyed. */
  readonly deadlineMs: number;
  /** Ends the request early (shutdown); the promise rejects with "aborted". */
  readonly signal?: AbortSignal | undefined;
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** Larger bodies are refused rather than buffered without bound. */
  readonly maxBodyBytes?: number | undefined;
}

/** Enough for a large Envoy /config_dump; an admin answer beyond it is not one readygate can use. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024;

/**
 * GET `url` and read the whole body, with a deadline that holds. Every outbound admin call readygate's
 * commands and peer queries make goes through here.
 *
 * Why not fetch with AbortSignal.timeout: on Node 20 a signal built with AbortSignal.any over
 * AbortSignal.timeout stopped firing once garbage collection ran (the timeout signal is only weakly
 * held), so a server that accepts and never answers hung `drain-wait` and `status` for minutes. Here the
 * deadline is a plain setTimeout owned by the request: an active timer is held by the event loop itself
 * and fires whatever the GC does; it destroys the socket, which ends every stage (connect, headers, body).
 *
 * Rejects with a ReadygateError (ADMIN_UNREACHABLE) whose message is only the problem
 * (`ECONNREFUSED`, `no complete answer within 3000 ms`, `aborted`), for the caller to put in its sentence.
 */
export function httpGet(url: URL | string, options: HttpGetOptions): Promise<HttpAnswer> {
  const target = typeof url === 'string' ? new URL(url) : url;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const { signal } = options;
  return new Promise<HttpAnswer>((resolve, reject) => {
    let settled = false;
    const finish = (outcome: { answer: HttpAnswer } | { problem: string; cause?: unknown }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if ('answer' in outcome) resolve(outcome.answer);
      else {
        request.destroy();
        reject(
          new ReadygateError(ErrorCode.ADMIN_UNREACHABLE, outcome.problem, {
            ...(outcome.cause === undefined ? {} : { cause: outcome.cause }),
          }),
        );
      }
    };
    const onAbort = (): void => {
      finish({ problem: 'aborted' });
    };
    const timer = setTimeout(
      () => {
        finish({ problem: `no complete answer within ${options.deadlineMs} ms` });
      },
      Math.max(0, options.deadlineMs),
    );
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const request = send(target, { method: 'GET', headers: options.headers ?? {}, agent: false });
    request.on('error', (error: NodeJS.ErrnoException) => {
      finish({ problem: typeof error.code === 'string' ? error.code : error.message, cause: error });
    });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBodyBytes) {
          finish({ problem: `answer larger than ${maxBodyBytes} bytes` });
          return;
        }
        chunks.push(chunk);
      });
      response.on('error', (error) => {
        finish({ problem: `answer broke off (${error.message})`, cause: error });
      });
      response.on('aborted', () => {
        finish({ problem: 'answer broke off' });
      });
      response.on('end', () => {
        finish({
          answer: { status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') },
        });
      });
    });
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    request.end();
  });
}

/**
 * `promise`, or the error `expired` makes once `ms` pass: for calls without a deadline of their own
 * (DNS, credential plugins, client-node's API calls). Like `httpGet`, a plain timer, which garbage
 * collection cannot cancel. The call itself is not aborted; its caller stops waiting for it.
 * Default error: ADMIN_UNREACHABLE naming `what`.
 */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  expired: () => Error = () =>
    new ReadygateError(ErrorCode.ADMIN_UNREACHABLE, `${what}: no answer within ${ms} ms`),
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(expired());
    }, ms);
  });
  return Promise.race([promise, deadline]).finally(() => {
    clearTimeout(timer);
  });
}

/** Listens on `host:port` (0 = any free port); resolves to the bound port, rejects on a listen error. */
export function listenOn(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      reject(error);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
