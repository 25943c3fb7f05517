/**
 * HEAD through the real Envoy (pinned 1.36.4) and readygate's ext_proc: for every cause the fixture can
 * produce, the replaced response has the GET's status and headers and no content. Checked on the wire:
 * over one HTTP/1.1 keep-alive connection (no stray bytes before the next response, which then parses)
 * and over one HTTP/2 connection (no DATA, the stream ends cleanly, no PROTOCOL_ERROR reset, no GOAWAY).
 */
import http2 from 'node:http2';
import net from 'node:net';
import test from 'ava';
import { startTopology, type Topology } from '../../bench/extproc-fixture.js';
import { FailureCause } from '../../src/extproc/classify.js';
import { EXTPROC_METRIC_NAMES } from '../../src/extproc/metrics.js';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';

let topology: Topology | undefined;

test.before(async () => {
  // A generous message timeout: a starved machine must not turn a slow answer into a pass-through.
  topology = await startTopology({ messageTimeout: '2s' });
});

test.after.always(async () => {
  await topology?.close();
});

const env = (): Topology => {
  if (topology === undefined) throw new Error('topology did not start');
  return topology;
};

/** Every mapped cause the fixture produces: path → status and cause (as extproc-causes.test.ts). */
const CASES: readonly { path: string; status: 502 | 503 | 504; cause: FailureCause }[] = [
  { path: '/refused', status: 503, cause: FailureCause.UPSTREAM_CONNECT_FAILURE },
  { path: '/close', status: 502, cause: FailureCause.UPSTREAM_CONNECTION_TERMINATION },
  { path: '/garbage', status: 502, cause: FailureCause.UPSTREAM_PROTOCOL_ERROR },
  { path: '/slow', status: 504, cause: FailureCause.UPSTREAM_TIMEOUT },
  { path: '/per-try', status: 504, cause: FailureCause.UPSTREAM_PER_TRY_TIMEOUT },
  { path: '/h2-reset', status: 502, cause: FailureCause.UPSTREAM_RESET },
  { path: '/max-duration', status: 504, cause: FailureCause.UPSTREAM_MAX_STREAM_DURATION },
  { path: '/empty', status: 503, cause: FailureCause.NO_HEALTHY_UPSTREAM },
  { path: '/draining', status: 503, cause: FailureCause.NO_HEALTHY_UPSTREAM },
  { path: '/missing', status: 503, cause: FailureCause.CLUSTER_NOT_FOUND },
  { path: '/overflow', status: 503, cause: FailureCause.UPSTREAM_OVERFLOW },
  { path: '/terminating-500', status: 503, cause: FailureCause.ENDPOINT_TERMINATING },
  { path: '/fallback-500', status: 503, cause: FailureCause.ENDPOINT_TERMINATING },
];

interface Head {
  statusLine: string;
  headers: Map<string, string>;
}

/**
 * One HTTP/1.1 connection read by hand, so every byte Envoy sends is accounted for: a response's header
 * block, then exactly the body its framing announces (none for HEAD), then nothing until the next request.
 */
class RawConnection {
  readonly #socket: net.Socket;
  #buffer = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(port: number) {
    this.#socket = net.connect(port, '127.0.0.1');
    this.#socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake?.();
    });
    this.#socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
    this.#socket.on('error', () => undefined);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes received and not yet consumed. */
  get pending(): number {
    return this.#buffer.length;
  }

  send(method: string, path: string): void {
    this.#socket.write(`${method} ${path} HTTP/1.1\r\nhost: gateway.test\r\n\r\n`);
  }

  async #until(check: () => boolean, what: string): Promise<void> {
    const deadline = performance.now() + 10_000;
    while (!check()) {
      if (this.#closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  async readHead(): Promise<Head> {
    await this.#until(() => this.#buffer.includes('\r\n\r\n'), 'a response header block');
    const end = this.#buffer.indexOf('\r\n\r\n');
    const [statusLine = '', ...lines] = this.#buffer.subarray(0, end).toString('latin1').split('\r\n');
    this.#buffer = this.#buffer.subarray(end + 4);
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    return { statusLine, headers };
  }

  /** A chunked body, whole. */
  async readChunkedBody(): Promise<string> {
    let body = '';
    for (;;) {
      await this.#until(() => this.#buffer.includes('\r\n'), 'a chunk size');
      const lineEnd = this.#buffer.indexOf('\r\n');
      const size = Number.parseInt(this.#buffer.subarray(0, lineEnd).toString('latin1'), 16);
      await this.#until(() => this.#buffer.length >= lineEnd + 2 + size + 2, 'a chunk');
      body += this.#buffer.subarray(lineEnd + 2, lineEnd + 2 + size).toString('utf8');
      this.#buffer = this.#buffer.subarray(lineEnd + 2 + size + 2);
      if (size === 0) return body;
    }
  }

  /** Waits a moment for stray bytes; resolves with how many arrived. */
  async strayBytesAfter(ms: number): Promise<number> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.#buffer.length;
  }

  close(): void {
    this.#socket.destroy();
  }
}

test.serial('HTTP/1.1 keep-alive: HEAD on every mapped cause gets status and headers, no body', async (t) => {
  const port = Number(new URL(env().baseUrl).port);
  const connection = new RawConnection(port);
  t.teardown(() => {
    connection.close();
  });
  for (const expected of CASES) {
    connection.send('HEAD', expected.path);
    const head = await connection.readHead();
    t.true(
      head.statusLine.startsWith(`HTTP/1.1 ${expected.status} `),
      `${expected.path}: ${head.statusLine}`,
    );
    t.is(head.headers.get(CAUSE_HEADER), expected.cause, expected.path);
    t.is(head.headers.get('content-type'), PROBLEM_CONTENT_TYPE, expected.path);
    t.is(head.headers.get('retry-after'), expected.status === 503 ? '1' : undefined, expected.path);
    // The framing headers of a HEAD answer describe nothing that follows; the body must not follow.
    t.is(await connection.strayBytesAfter(50), 0, `${expected.path}: bytes after the HEAD answer`);
  }
  // The same connection still carries a normal exchange, which parses from its first byte.
  connection.send('GET', '/ok');
  const head = await connection.readHead();
  t.true(head.statusLine.startsWith('HTTP/1.1 200 '), head.statusLine);
  t.is(head.headers.get('transfer-encoding'), 'chunked');
  const echo = JSON.parse(await connection.readChunkedBody()) as { method: string; path: string };
  t.deepEqual([echo.method, echo.path], ['GET', '/ok']);
  t.false(connection.closed);
  // GET on a mapped cause over the same connection still gets the problem document.
  connection.send('GET', '/empty');
  const get = await connection.readHead();
  t.true(get.statusLine.startsWith('HTTP/1.1 503 '));
  const problem = JSON.parse(await connection.readChunkedBody()) as { type: string };
  t.is(problem.type, `https://readygate.dev/problems/${FailureCause.NO_HEALTHY_UPSTREAM}`);
  t.is(connection.pending, 0);
});

test.serial('HTTP/2: HEAD on every mapped cause ends with the headers, no DATA, no reset', async (t) => {
  const session = http2.connect(env().baseUrl);
  let goaway = false;
  session.on('goaway', () => {
    goaway = true;
  });
  const sessionErrors: Error[] = [];
  session.on('error', (error: Error) => {
    sessionErrors.push(error);
  });
  t.teardown(() => {
    session.destroy();
  });
  const exchange = (
    method: string,
    path: string,
  ): Promise<{
    status: number;
    headers: http2.IncomingHttpHeaders;
    body: Buffer;
    rstCode: number;
    error?: string;
  }> =>
    new Promise((resolve) => {
      const stream = session.request({ ':method': method, ':path': path });
      let headers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      let error: string | undefined;
      stream.on('response', (received) => {
        headers = received;
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (caught: Error) => {
        error = caught.message;
      });
      stream.on('close', () => {
        resolve({
          status: Number(headers[':status']),
          headers,
          body: Buffer.concat(chunks),
          rstCode: stream.rstCode,
          ...(error === undefined ? {} : { error }),
        });
      });
      stream.setTimeout(10_000, () => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
      });
      stream.end();
    });
  for (const expected of CASES) {
    const result = await exchange('HEAD', expected.path);
    t.is(result.status, expected.status, expected.path);
    t.is(result.headers[CAUSE_HEADER], expected.cause, expected.path);
    t.is(result.body.length, 0, `${expected.path}: no DATA`);
    t.is(result.rstCode, http2.constants.NGHTTP2_NO_ERROR, `${expected.path}: ${result.error ?? ''}`);
    t.is(result.error, undefined, expected.path);
  }
  const ok = await exchange('GET', '/ok');
  t.is(ok.status, 200);
  t.is((JSON.parse(ok.body.toString('utf8')) as { method: string }).method, 'GET');
  const get = await exchange('GET', '/missing');
  t.is(get.status, 503);
  t.is(
    (JSON.parse(get.body.toString('utf8')) as { type: string }).type,
    `https://readygate.dev/problems/${FailureCause.CLUSTER_NOT_FOUND}`,
  );
  t.false(goaway, 'no GOAWAY from Envoy');
  t.deepEqual(sessionErrors, []);
});

test.serial('every HEAD above was mapped by ext_proc, none passed through', async (t) => {
  const mapped = await env().registry.getSingleMetric(EXTPROC_METRIC_NAMES.mapped)!.get();
  const total = mapped.values.reduce((sum, value) => sum + value.value, 0);
  // 13 HEAD + 1 GET per protocol.
  t.is(total, 2 * (CASES.length + 1));
  t.is(await env().extprocStat('streams_failed'), 0);
  t.is(await env().extprocStat('message_timeouts'), 0);
});
