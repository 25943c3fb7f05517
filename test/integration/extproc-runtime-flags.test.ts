/**
 * Why the template sets what it sets, proven on the pinned Envoy (1.36.4):
 * - without the two runtime flags, router local replies (UH, UC, ...) never reach ext_proc — only upstream
 *   responses do — so readygate could not put its body and cause header on them;
 * - without local_reply_config, Envoy answers a reset before response headers (UC) with 503, not 502.
 */
import test from 'ava';
import { startTopology, type Topology } from '../../bench/extproc-fixture.js';
import { CAUSE_HEADER, PROBLEM_CONTENT_TYPE } from '../../src/extproc/problem.js';

const started: Topology[] = [];
test.after.always(async () => {
  for (const topology of started) await topology.close();
});

const get = (topology: Topology, path: string): Promise<Response> =>
  fetch(`${topology.baseUrl}${path}`, { signal: AbortSignal.timeout(10_000) });

test.serial('Envoy 1.36.4 defaults: router local replies skip ext_proc', async (t) => {
  const topology = await startTopology({
    messageTimeout: '2s',
    runtime: {
      'envoy.reloadable_features.skip_ext_proc_on_local_reply': true,
      'envoy.reloadable_features.router_filter_resetall_on_local_reply': false,
    },
  });
  started.push(topology);
  for (const [path, status, body] of [
    ['/empty', 503, 'no healthy upstream'],
    [
      '/close',
      502,
      'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
    ],
  ] as const) {
    const response = await get(topology, path);
    t.is(response.status, status);
    t.is(response.headers.get(CAUSE_HEADER), null);
    t.is(await response.text(), body);
  }
  t.is(await topology.extprocStat('streams_started'), 0);
  // An upstream's own 5xx still goes through ext_proc.
  const terminating = await get(topology, '/terminating-500');
  t.is(terminating.status, 503);
  t.is(terminating.headers.get('content-type'), PROBLEM_CONTENT_TYPE);
  await terminating.arrayBuffer();
  t.is(await topology.extprocStat('streams_started'), 1);
  await topology.close();
});

test.serial('without local_reply_config Envoy answers a close before headers with 503', async (t) => {
  const topology = await startTopology({ extproc: false, localReplyConfig: false });
  started.push(topology);
  const close = await get(topology, '/close');
  t.is(close.status, 503);
  await close.arrayBuffer();
  // UPE is already 502 in Envoy; the mapper keeps it so.
  const garbage = await get(topology, '/garbage');
  t.is(garbage.status, 502);
  await garbage.arrayBuffer();
  await topology.close();
});
