/**
 * `readygate serve` (the CLI, in-process) exposes drain-wait with any source: a pod is drained once every
 * connected client has ACKed a version where it is DRAINING, and a pod still HEALTHY times out naming
 * the client. The raw xDS client stands in for Envoy here; real Envoys are in drain-wait.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { pino } from 'pino';
import { main } from '../../src/cli/main.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { waitUntil } from '../helpers/envoy-process.js';
import { freePort } from '../helpers/ports.js';
import { XdsTestClient } from '../helpers/xds-client.js';

const ENDPOINTS = `services:
- namespace: default
  name: web
  ports: [{name: http, port: 8080}]
  endpoints:
  - addresses: ["127.0.0.2"]
    conditions: {ready: true, serving: true, terminating: false}
    targetRef: {kind: Pod, name: web-new}
  - addresses: ["127.0.0.3"]
    conditions: {ready: false, serving: true, terminating: true}
    targetRef: {kind: Pod, name: web-old}
`;

test('serve exposes /drain-wait: drained after the ACK of DRAINING, 504 naming the client otherwise', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'readygate-serve-'));
  const file = path.join(dir, 'endpoints.yaml');
  await writeFile(file, ENDPOINTS);
  const [xdsPort, adminPort] = [await freePort(), await freePort()];
  const stop = new AbortController();
  const io = {
    stdout: { write: () => true },
    stderr: { write: () => true },
    env: {},
    signal: stop.signal,
    logger: pino({ level: 'silent' }),
  };
  const serving = main(
    [
      'serve',
      '--source',
      `file:${file}`,
      '--xds-address',
      `127.0.0.1:${xdsPort}`,
      '--admin-address',
      `127.0.0.1:${adminPort}`,
    ],
    io,
  );
  const client = new XdsTestClient(`127.0.0.1:${xdsPort}`);
  t.teardown(async () => {
    client.close();
    stop.abort();
    await serving;
    await rm(dir, { recursive: true, force: true });
  });
  const admin = `http://127.0.0.1:${adminPort}`;
  await waitUntil(async () => (await fetch(`${admin}/readyz`)).status === 200, {
    description: 'serve ready',
  });

  const stream = client.sotw();
  stream.send({
    node: { id: 'gateway-under-test' },
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http'],
  });
  const response = await stream.next();
  stream.send({
    type_url: TypeUrl.ENDPOINT,
    resource_names: ['default/web:http'],
    version_info: response.version_info!,
    response_nonce: response.nonce!,
  });

  const drained = await fetch(`${admin}/drain-wait?pod=default/web-old&timeout=5s`);
  t.is(drained.status, 200);
  const drainedBody = (await drained.json()) as { drained: boolean; waitingOn: string[] };
  t.true(drainedBody.drained);
  t.deepEqual(drainedBody.waitingOn, []);

  const serving200 = await fetch(`${admin}/drain-wait?pod=default/web-new&timeout=500ms`);
  t.is(serving200.status, 504);
  const stuck = (await serving200.json()) as { drained: boolean; waitingOn: string[] };
  t.false(stuck.drained);
  t.deepEqual(stuck.waitingOn, ['gateway-under-test']);

  t.is((await fetch(`${admin}/debug/gates`)).status, 200);
  stop.abort();
  t.is(await serving, 0);
});
