import test from 'ava';
import { DEMO_SERVICE, serviceFor, type GatewayKind, type SliceEntry } from '../../src/demo/slice.js';
import { eligibleHosts } from '../../src/model/eligibility.js';
import { clusterName } from '../../src/model/types.js';

const entry = (pod: string, ip: string, conditions: Partial<SliceEntry> = {}): SliceEntry => ({
  pod,
  ip,
  port: 8000,
  ready: true,
  serving: true,
  terminating: false,
  gatePending: false,
  ...conditions,
});

// A rollout moment: one ready pod, one still warming up, one terminating but serving, one that has exited,
// one whose containers are ready and which waits only for readygate's readiness gate.
const slice: SliceEntry[] = [
  entry('web-1', '127.0.0.20'),
  entry('web-2', '127.0.0.21', { ready: false, serving: false }),
  entry('web-3', '127.0.0.22', { ready: false, serving: true, terminating: true }),
  entry('web-4', '127.0.0.23', { ready: false, serving: false, terminating: true }),
  entry('web-5', '127.0.0.24', { ready: false, serving: true, gatePending: true }),
];

const hosts = (kind: GatewayKind): string[] => {
  const service = serviceFor(slice, kind);
  const port = service.ports[0];
  if (!port) throw new Error('no port');
  return eligibleHosts(service, port).map((h) => `${h.address}:${h.port} ${h.health}`);
};

test('readygate gets the conditions: ready and gate-pending HEALTHY, serving-terminating DRAINING, the rest left out', (t) => {
  t.deepEqual(hosts('readygate'), [
    '127.0.0.20:8000 HEALTHY',
    '127.0.0.22:8000 DRAINING',
    '127.0.0.24:8000 HEALTHY',
  ]);
});

test('ready-only gets the ready addresses only: not ready, terminating and gate-pending are gone', (t) => {
  t.deepEqual(hosts('ready-only'), ['127.0.0.20:8000 HEALTHY']);
});

test('naive gets every address of the slice as HEALTHY, whatever its conditions', (t) => {
  t.deepEqual(hosts('naive'), [
    '127.0.0.20:8000 HEALTHY',
    '127.0.0.21:8000 HEALTHY',
    '127.0.0.22:8000 HEALTHY',
    '127.0.0.23:8000 HEALTHY',
    '127.0.0.24:8000 HEALTHY',
  ]);
});

test('the service is default/web with one port whose target port comes from each endpoint', (t) => {
  const service = serviceFor([entry('web-1', '127.0.0.20', { port: 41000 })], 'readygate');
  t.is(clusterName(service, service.ports[0]?.key ?? ''), `default/${DEMO_SERVICE}:http`);
  t.deepEqual(service.endpoints[0]?.ports, { http: 41000 });
  t.deepEqual(service.endpoints[0]?.targetRef, { kind: 'Pod', namespace: 'default', name: 'web-1' });
});

test('an empty slice is a service with no endpoints (an empty CLA, not a missing one)', (t) => {
  t.deepEqual(serviceFor([], 'naive').endpoints, []);
});
