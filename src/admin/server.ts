/**
 * The admin HTTP server: health, readiness, metrics and debug views. Loopback by default because
 * /debug/* shows the whole endpoint model.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { formatHostPort, parseHostPort } from '../net.js';

export interface Readiness {
  readonly ready: boolean;
  readonly reason?: string;
  /**
   * Problems that do not make readygate unready but that an operator should see (e.g. an endpoints file
   * that is rejected while its last good version is served): listed under the status line of /readyz.
   */
  readonly warnings?: readonly string[];
}

export type AdminRouteHandler = (
  request: http.IncomingMessage,
  url: URL,
) => Promise<AdminResponse> | AdminResponse;

export interface AdminResponse {
  readonly status: number;
  readonly body: unknown;
  /** Defaults to JSON; `text` sends the body as plain text. */
  readonly type?: 'json' | 'text' | 'prometheus';
}

export interface AdminServerOptions {
  readonly address: string;
  readonly registry: Registry;
  readonly readiness: () => Readiness;
  /**
   * Extra GET routes by path, e.g. /debug/syncz; other parts of readygate plug in here. Looked up per
   * request, so a caller may add routes after the server listens (serve opens the admin port first).
   */
  readonly routes?: Readonly<Record<string, AdminRouteHandler>>;
  readonly logger?: Logger;
}

export interface AdminServer {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const logger = options.logger ?? silentLogger;
  const { host, port } = parseHostPort(options.address);
  const builtin: Record<string, AdminRouteHandler> = {
    '/healthz': () => ({ status: 200, body: 'ok\n', type: 'text' }),
    '/readyz': () => {
      const readiness = options.readiness();
      const warnings = (readiness.warnings ?? []).map((warning) => `warning: ${warning}\n`).join('');
      return readiness.ready
        ? { status: 200, body: `ready\n${warnings}`, type: 'text' }
        : { status: 503, body: `not ready: ${readiness.reason ?? 'starting'}\n${warnings}`, type: 'text' };
    },
    '/metrics': async () => ({ status: 200, body: await options.registry.metrics(), type: 'prometheus' }),
  };
  const extra = options.routes ?? {};
  const handlerFor = (pathname: string): AdminRouteHandler | undefined =>
    Object.hasOwn(extra, pathname)
      ? extra[pathname]
      : Object.hasOwn(builtin, pathname)
        ? builtin[pathname]
        : undefined;
  const routeNames = (): string[] => [...new Set([...Object.keys(builtin), ...Object.keys(extra)])].sort();

  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://admin');
    const handler = handlerFor(url.pathname);
    const reply = (r: AdminResponse): void => {
      const text =
        r.type === 'json' || r.type === undefined ? JSON.stringify(r.body, null, 2) + '\n' : String(r.body);
      const contentType =
        r.type === 'prometheus'
          ? options.registry.contentType
          : r.type === 'text'
            ? 'text/plain; charset=utf-8'
            : 'application/json';
      response.writeHead(r.status, { 'content-type': contentType });
      response.end(text);
    };
    if (!handler) {
      reply({
        status: 404,
        body: { error: `no such admin endpoint: ${url.pathname}`, endpoints: routeNames() },
      });
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      reply({ status: 405, body: { error: 'admin endpoints are read-only: use GET' } });
      return;
    }
    Promise.resolve()
      .then(() => handler(request, url))
      .then(reply, (error: unknown) => {
        logger.error({ err: error, path: url.pathname }, 'admin handler failed');
        reply({ status: 500, body: { error: errorMessage(error) } });
      });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => {
      reject(
        new ReadygateError(
          ErrorCode.LISTEN_FAILED,
          `admin server cannot listen on ${options.address}: ${errorMessage(error)}`,
          { cause: error },
        ),
      );
    });
    server.listen(port, host, resolve);
  });
  const bound = server.address() as AddressInfo;
  logger.info({ address: `${bound.address}:${bound.port}` }, 'admin server listening');
  return {
    address: formatHostPort(bound.address, bound.port),
    port: bound.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
