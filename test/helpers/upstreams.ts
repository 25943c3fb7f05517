/**
 * Purpose-built upstreams for Envoy tests, each a real listener on a loopback address (127.0.0.x) with one
 * behaviour: answer, answer late, refuse, hang up, or talk garbage. Every upstream counts what it saw and
 * closes every socket it holds on `close()`, so a test's teardown leaves nothing behind.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { freePort } from './ports.js';

export interface Upstream {
  readonly host: string;
  readonly port: number;
  /** `host:port`. */
  readonly address: string;
  /** Requests (HTTP) or connections (raw TCP behaviours) received so far. */
  readonly hits: () => number;
  close(): Promise<void>;
}

export interface HttpUpstreamOptions {
  /** Loopback address to bind; default 127.0.0.1. */
  host?: string;
  /** Fixed port; default any free one. */
  port?: number;
}

type Handler = (request: http.IncomingMessage, body: Buffer, response: http.ServerResponse) => void;

async function listen(server: net.Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('upstream did not bind');
  return address.port;
}

/** The Upstream a test holds: `close()` drops every connection first, so the server closes at once. */
function upstreamHandle(
  server: net.Server,
  host: string,
  port: number,
  hits: () => number,
  dropConnections: () => void,
): Upstream {
  return {
    host,
    port,
    address: `${host}:${port}`,
    hits,
    close: async () => {
      dropConnections();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
    },
  };
}

/** An HTTP/1.1 upstream whose handler sees the whole request body. */
export async function httpUpstream(handler: Handler, options: HttpUpstreamOptions = {}): Promise<Upstream> {
  const host = options.host ?? '127.0.0.1';
  let hits = 0;
  const server = http.createServer((request, response) => {
    hits++;
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      handler(request, Buffer.concat(chunks), response);
    });
  });
  server.keepAliveTimeout = 30_000;
  const port = await listen(server, host, options.port ?? 0);
  return upstreamHandle(
    server,
    host,
    port,
    () => hits,
    () => {
      server.closeAllConnections();
    },
  );
}

/** 200 with a JSON echo of method, path, headers and body length. */
export function okUpstream(options: HttpUpstreamOptions = {}): Promise<Upstream> {
  return httpUpstream((request, body, response) => {
    const echo = JSON.stringify({
      method: request.method,
      path: request.url,
      headers: request.headers,
      bodyBytes: body.length,
    });
    response.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'ok' });
    response.end(echo);
  }, options);
}

/** A fixed status with a fixed body (e.g. the application's own 500). */
export function statusUpstream(
  status: number,
  body: string,
  options: HttpUpstreamOptions & { headers?: Record<string, string> } = {},
): Promise<Upstream> {
  return httpUpstream((_request, _body, response) => {
    response.writeHead(status, { 'content-type': 'text/plain', ...(options.headers ?? {}) });
    response.end(body);
  }, options);
}

/** Answers 200 only after `delayMs` (bounded by close(), which cancels pending answers). */
export async function sleepyUpstream(delayMs: number, options: HttpUpstreamOptions = {}): Promise<Upstream> {
  const pending = new Set<NodeJS.Timeout>();
  const upstream = await httpUpstream((_request, _body, response) => {
    const timer = setTimeout(() => {
      pending.delete(timer);
      if (!response.destroyed) response.writeHead(200, { 'content-type': 'text/plain' }).end('slept');
    }, delayMs);
    pending.add(timer);
  }, options);
  return {
    ...upstream,
    close: async () => {
      for (const timer of pending) clearTimeout(timer);
      pending.clear();
      await upstream.close();
    },
  };
}

/**
 * A raw TCP upstream: `onConnection` gets each socket. All sockets are destroyed on close().
 */
export async function tcpUpstream(
  onConnection: (socket: net.Socket) => void,
  options: HttpUpstreamOptions = {},
): Promise<Upstream> {
  const host = options.host ?? '127.0.0.1';
  const sockets = new Set<net.Socket>();
  let hits = 0;
  const server = net.createServer((socket) => {
    hits++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {
      // Peers resetting is the point of these upstreams.
    });
    onConnection(socket);
  });
  const port = await listen(server, host, options.port ?? 0);
  return upstreamHandle(
    server,
    host,
    port,
    () => hits,
    () => {
      for (const socket of sockets) socket.destroy();
    },
  );
}

/** Reads the request, then closes the connection (FIN) without answering. */
export function acceptThenCloseUpstream(options: HttpUpstreamOptions = {}): Promise<Upstream> {
  return tcpUpstream((socket) => {
    socket.once('data', () => socket.end());
  }, options);
}

/** Reads the request, then resets the connection (RST) without answering. */
export function acceptThenResetUpstream(options: HttpUpstreamOptions = {}): Promise<Upstream> {
  return tcpUpstream((socket) => {
    socket.once('data', () => socket.resetAndDestroy());
  }, options);
}

/** Answers every request with bytes that are not HTTP, and keeps the connection open. */
export function garbageUpstream(options: HttpUpstreamOptions = {}): Promise<Upstream> {
  return tcpUpstream((socket) => {
    socket.once('data', () => socket.write('\u0000\u0001this is not http at all\r\n\r\n'));
  }, options);
}

/** Accepts connections and reads requests but never answers (until close()). */
export function silentUpstream(options: HttpUpstreamOptions = {}): Promise<Upstream> {
  return tcpUpstream((socket) => {
    socket.resume();
  }, options);
}

/**
 * A port nothing listens on: connecting is refused. The port was free when chosen; the upstream never
 * binds it, so `hits` stays 0.
 */
export async function refusingUpstream(options: HttpUpstreamOptions = {}): Promise<Upstream> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? (await freePort(host));
  return { host, port, address: `${host}:${port}`, hits: () => 0, close: () => Promise.resolve() };
}

/**
 * An HTTP/2 (prior knowledge, h2c) upstream that resets every stream with RST_STREAM before answering;
 * the connection itself stays up. `errorCode` defaults to INTERNAL_ERROR.
 */
export async function http2ResetUpstream(
  options: HttpUpstreamOptions & { errorCode?: number } = {},
): Promise<Upstream> {
  const host = options.host ?? '127.0.0.1';
  const sessions = new Set<http2.ServerHttp2Session>();
  let hits = 0;
  const server = http2.createServer();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => {
      // Envoy going away mid-test is fine.
    });
  });
  server.on('stream', (stream) => {
    hits++;
    stream.on('error', () => {
      // The reset we send surfaces here too.
    });
    stream.close(options.errorCode ?? http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
  const port = await listen(server, host, options.port ?? 0);
  return upstreamHandle(
    server,
    host,
    port,
    () => hits,
    () => {
      for (const session of sessions) session.destroy();
    },
  );
}

/** An upstream whose open connections a test can reset at a moment it chooses. */
export interface ResettableUpstream extends Upstream {
  /** Resets (RST) every connection it holds; returns how many. */
  resetConnections(): number;
}

/**
 * Starts an HTTP/1.1 response (status line, headers promising `promisedBytes`, part of the body) and
 * holds the connection until the test calls `resetConnections()`: a failure after the response started,
 * timed by the test (e.g. after the client has the headers) rather than by a sleep.
 */
export async function partialResponseUpstream(
  status: number,
  options: HttpUpstreamOptions & { promisedBytes?: number; sentBody?: string } = {},
): Promise<ResettableUpstream> {
  const sentBody = options.sentBody ?? 'partial';
  const promised = options.promisedBytes ?? 1000;
  const answered = new Set<net.Socket>();
  const upstream = await tcpUpstream((socket) => {
    socket.once('data', () => {
      socket.write(
        `HTTP/1.1 ${status} Whatever\r\ncontent-type: text/plain\r\ncontent-length: ${promised}\r\n\r\n${sentBody}`,
      );
      answered.add(socket);
      socket.once('close', () => answered.delete(socket));
    });
  }, options);
  return {
    ...upstream,
    resetConnections: () => {
      const count = answered.size;
      for (const socket of answered) socket.resetAndDestroy();
      answered.clear();
      return count;
    },
  };
}
