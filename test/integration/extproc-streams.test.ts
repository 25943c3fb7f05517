/**
 * ext_proc streams at volume on one HTTP/2 connection. Envoy used to end every ext_proc stream with
 * RST_STREAM once it had the answer; the server's nghttp2 counts each received RST_STREAM against its
 * stream-reset rate limit (a token bucket of 1000, refilled at 33/s) and sends GOAWAY when it runs out,
 * failing the streams in flight: responses went out unmapped. Now the server ends each stream with OK right
 * after its answer, and the shipped bootstraps turn on Envoy's graceful close (half-close, wait for the
 * server's end, no reset). Checked three ways:
 * - 100,000 streams from a raw HTTP/2 client that behaves like Envoy with graceful close (it half-closes
 *   only once it has the answer and the server's trailers), on one connection: every stream answered and
 *   ended by the server, no GOAWAY, no reset;
 * - 5,000 mapped responses through the real Envoy (5× the reset budget): one ext_proc connection, no
 *   GOAWAY, no RST_STREAM sent by Envoy, no failed stream;
 * - 64 client connections of mixed traffic through the real Envoy: every mapped response has its cause
 *   header and its problem body (none for HEAD), every other response is untouched.
 */
import http from 'node:http';
import http2 from 'node:http2';
import test from 'ava';
import { APP_ERROR_BODY, startTopology, type Topology } from '../../bench/extproc-fixture.js';
import { ResponseAttribute } from '../../src/extproc/attributes.js';
import { FailureCause } from '../../src/extproc/classify.js';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';
import { PROCESS_METHOD_PATH, startExtprocServer } from '../../src/extproc/server.js';
import { codecFor } from '../../src/protos/envoy-protos.js';

const requestCodec = codecFor<object>('envoy.service.ext_proc.v3.ProcessingRequest');

/** One ProcessingRequest (a UH 503's response headers) in a gRPC length-prefixed frame. */
function grpcFrame(): Buffer {
  const message = requestCodec.encode({
    response_headers: { headers: { headers: [{ key: ':status', raw_value: Buffer.from('503') }] } },
    attributes: {
      'envoy.filters.http.ext_proc': { fields: { [ResponseAttribute.FLAGS]: { number_value: 2 } } },
    },
  });
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

test('100,000 streams on one connection: each answered and ended by the server before the client half-closes, no GOAWAY', async (t) => {
  t.timeout(110_000);
  const TOTAL = 100_000;
  // Envoy keeps many streams open at once; 100 keeps the client's own cost low.
  const CONCURRENCY = 100;
  const server = await startExtprocServer({ address: '127.0.0.1:0' });
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  t.teardown(async () => {
    session.destroy();
    await server.close();
  });
  let goaway = false;
  session.on('goaway', () => {
    goaway = true;
  });
  session.on('error', () => undefined);
  const frame = grpcFrame();
  const outcomes = { answered: 0, endedByServerFirst: 0, cleanClose: 0, failed: 0 };
  const started = performance.now();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let done = 0;
    const next = (): void => {
      if (goaway || sent >= TOTAL) {
        if (done === sent) resolve();
        return;
      }
      sent++;
      const stream = session.request({
        ':method': 'POST',
        ':path': PROCESS_METHOD_PATH,
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
        // The server ended the stream while this side was still open: it did not wait for a half-close.
        if (trailers['grpc-status'] === '0' && bytes > 5) outcomes.answered++;
        if (stream.writable) outcomes.endedByServerFirst++;
        // Graceful Envoy half-closes once it has the answer and the server's end.
        stream.end();
      });
      stream.on('error', () => undefined);
      stream.on('close', () => {
        if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR) outcomes.cleanClose++;
        else outcomes.failed++;
        done++;
        next();
      });
      stream.write(frame);
    };
    for (let i = 0; i < CONCURRENCY; i++) next();
  });
  const seconds = (performance.now() - started) / 1000;
  t.log(`${TOTAL} streams in ${seconds.toFixed(1)} s (${Math.round(TOTAL / seconds)}/s)`);
  t.false(goaway, 'no GOAWAY');
  t.deepEqual(outcomes, { answered: TOTAL, endedByServerFirst: TOTAL, cleanClose: TOTAL, failed: 0 });
  t.false(session.closed || session.destroyed, 'the connection is still up');
  t.true(seconds < 100, `${seconds} s`);
});

let topology: Topology | undefined;

const env = async (): Promise<Topology> => {
  // A generous message timeout: a starved machine must not turn a slow answer into a pass-through.
  topology ??= await startTopology({ messageTimeout: '2s', logLevel: 'warn', captureLogs: false });
  return topology;
};

test.after.always(async () => {
  await topology?.close();
});

/** Envoy's stats for its connection(s) to the ext_proc cluster and the ext_proc filter. */
async function extprocStats(topo: Topology): Promise<Record<string, number>> {
  const stat = async (name: string): Promise<number> => (await topo.envoy.stat(name)) ?? 0;
  return {
    connections: await stat('cluster.readygate_extproc.upstream_cx_total'),
    goaways: await stat('cluster.readygate_extproc.upstream_cx_close_notify'),
    resetsSent: await stat('cluster.readygate_extproc.http2.tx_reset'),
    streamsFailed: await topo.extprocStat('streams_failed'),
    messageTimeouts: await topo.extprocStat('message_timeouts'),
  };
}

test.serial(
  '5,000 mapped responses through the real Envoy: one ext_proc connection, no GOAWAY, no reset',
  async (t) => {
    t.timeout(90_000);
    const topo = await env();
    const TOTAL = 5000;
    const session = http2.connect(topo.baseUrl);
    t.teardown(() => {
      session.destroy();
    });
    session.on('error', () => undefined);
    let mapped = 0;
    const other: string[] = [];
    await new Promise<void>((resolve) => {
      let sent = 0;
      let done = 0;
      const next = (): void => {
        if (sent >= TOTAL) return;
        sent++;
        const stream = session.request({ ':path': '/empty' });
        stream.on('response', (headers) => {
          if (headers[':status'] === 503 && headers[CAUSE_HEADER] === FailureCause.NO_HEALTHY_UPSTREAM)
            mapped++;
          else other.push(`${String(headers[':status'])} ${String(headers[CAUSE_HEADER])}`);
        });
        stream.resume();
        stream.on('error', () => undefined);
        stream.on('close', () => {
          done++;
          if (done === TOTAL) resolve();
          else next();
        });
        stream.end();
      };
      for (let i = 0; i < 64; i++) next();
    });
    t.is(mapped, TOTAL, other.slice(0, 5).join('; '));
    t.deepEqual(await extprocStats(topo), {
      connections: 1,
      goaways: 0,
      resetsSent: 0,
      streamsFailed: 0,
      messageTimeouts: 0,
    });
  },
);

/** The mixed traffic: path, method, and what the client must get. */
const MIX: readonly { path: string; method: 'GET' | 'HEAD'; status: number; cause?: FailureCause }[] = [
  { path: '/ok', method: 'GET', status: 200 },
  { path: '/ok', method: 'GET', status: 200 },
  { path: '/ok', method: 'GET', status: 200 },
  { path: '/healthy-500', method: 'GET', status: 500 },
  { path: '/empty', method: 'GET', status: 503, cause: FailureCause.NO_HEALTHY_UPSTREAM },
  { path: '/refused', method: 'GET', status: 503, cause: FailureCause.UPSTREAM_CONNECT_FAILURE },
  { path: '/close', method: 'GET', status: 502, cause: FailureCause.UPSTREAM_CONNECTION_TERMINATION },
  { path: '/terminating-500', method: 'GET', status: 503, cause: FailureCause.ENDPOINT_TERMINATING },
  { path: '/missing', method: 'GET', status: 503, cause: FailureCause.CLUSTER_NOT_FOUND },
  { path: '/empty', method: 'HEAD', status: 503, cause: FailureCause.NO_HEALTHY_UPSTREAM },
];

test.serial(
  '64 connections of mixed traffic: every mapped response has its cause and body, the rest untouched',
  async (t) => {
    t.timeout(90_000);
    const topo = await env();
    const before = await extprocStats(topo);
    const CONNECTIONS = 64;
    const PER_CONNECTION = 100;
    const port = Number(new URL(topo.baseUrl).port);
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
    t.teardown(() => {
      agent.destroy();
    });
    const wrong: string[] = [];
    let checked = 0;
    const one = (index: number): Promise<void> => {
      const expected = MIX[index % MIX.length]!;
      return new Promise((resolve) => {
        const request = http.request(
          { agent, host: '127.0.0.1', port, path: expected.path, method: expected.method, timeout: 10_000 },
          (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () => {
              const body = Buffer.concat(chunks).toString('utf8');
              const problem = (): string | undefined => {
                if (expected.method === 'HEAD') return body === '' ? undefined : `HEAD body ${body.length} B`;
                try {
                  const parsed = JSON.parse(body) as { type?: string; status?: number };
                  return parsed.type === `https://readygate.dev/problems/${expected.cause}` &&
                    parsed.status === expected.status
                    ? undefined
                    : `problem ${body}`;
                } catch {
                  return `body is not JSON: ${body.slice(0, 80)}`;
                }
              };
              const fault =
                response.statusCode !== expected.status
                  ? `status ${response.statusCode}`
                  : expected.cause === undefined
                    ? response.headers[CAUSE_HEADER] !== undefined
                      ? 'cause header on an untouched response'
                      : expected.status === 500 && body !== APP_ERROR_BODY
                        ? 'app body changed'
                        : undefined
                    : response.headers[CAUSE_HEADER] !== expected.cause
                      ? `cause ${String(response.headers[CAUSE_HEADER])}`
                      : response.headers['content-type'] !== PROBLEM_CONTENT_TYPE
                        ? `content-type ${String(response.headers['content-type'])}`
                        : problem();
              if (fault !== undefined) wrong.push(`${expected.method} ${expected.path}: ${fault}`);
              checked++;
              resolve();
            });
          },
        );
        request.on('timeout', () => request.destroy(new Error('timeout')));
        request.on('error', (error) => {
          wrong.push(`${expected.method} ${expected.path}: ${error.message}`);
          resolve();
        });
        request.end();
      });
    };
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async (_, connection) => {
        for (let i = 0; i < PER_CONNECTION; i++) await one(connection * PER_CONNECTION + i);
      }),
    );
    t.log(
      `${CONNECTIONS * PER_CONNECTION} requests in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    t.is(checked, CONNECTIONS * PER_CONNECTION);
    t.deepEqual(wrong.slice(0, 10), []);
    t.is(wrong.length, 0);
    const after = await extprocStats(topo);
    t.deepEqual(
      {
        goaways: after['goaways']! - before['goaways']!,
        resetsSent: after['resetsSent']! - before['resetsSent']!,
        streamsFailed: after['streamsFailed']! - before['streamsFailed']!,
        messageTimeouts: after['messageTimeouts']! - before['messageTimeouts']!,
      },
      { goaways: 0, resetsSent: 0, streamsFailed: 0, messageTimeouts: 0 },
    );
  },
);
