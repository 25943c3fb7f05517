import test from 'ava';
import {
  classifyConditions,
  eligibleHosts,
  resolveConditions,
  type EligibilityOptions,
} from '../../src/model/eligibility.js';
import type { EndpointConditions, EndpointModel, ServiceModel } from '../../src/model/types.js';

type Flag = boolean | undefined;
const show = (v: Flag): string => (v === undefined ? 'nil' : String(v));

// Every ready × serving × terminating combination, nil included (27 rows), against Kubernetes' defaults.
const table: [Flag, Flag, Flag, ReturnType<typeof classifyConditions>][] = [];
for (const ready of [true, false, undefined]) {
  for (const serving of [true, false, undefined]) {
    for (const terminating of [true, false, undefined]) {
      const r = ready ?? true;
      const s = serving ?? r;
      const t = terminating ?? false;
      const expected = t ? (s ? 'serving-terminating' : 'excluded') : r ? 'ready' : 'excluded';
      table.push([ready, serving, terminating, expected]);
    }
  }
}

for (const [ready, serving, terminating, expected] of table) {
  test(`ready=${show(ready)} serving=${show(serving)} terminating=${show(terminating)} → ${expected}`, (t) => {
    const conditions: EndpointConditions = { ready, serving, terminating };
    t.is(classifyConditions(conditions), expected);
  });
}

test('nil defaults: ready nil = true, serving nil = ready, terminating nil = false', (t) => {
  t.deepEqual(resolveConditions({}), { ready: true, serving: true, terminating: false });
  t.deepEqual(resolveConditions({ ready: false }), { ready: false, serving: false, terminating: false });
  t.deepEqual(resolveConditions({ ready: false, terminating: true }), {
    ready: false,
    serving: false,
    terminating: true,
  });
});

const ep = (
  address: string,
  conditions: EndpointConditions,
  extra: Partial<EndpointModel> = {},
): EndpointModel => ({
  addresses: [address],
  conditions,
  targetRef: { kind: 'Pod', name: `pod-${address}` },
  ...extra,
});
const svc = (endpoints: EndpointModel[]): ServiceModel => ({
  namespace: 'default',
  name: 'web',
  ports: [{ key: 'http', port: 80, targetPort: 8080 }],
  endpoints,
});
const summary = (service: ServiceModel, options?: EligibilityOptions): string[] =>
  eligibleHosts(service, service.ports[0]!, options).map(
    (h) => `${h.address}:${h.port} ${h.health} ${h.state}`,
  );

const READY = { ready: true, serving: true, terminating: false };
const SERVING_TERMINATING = { ready: false, serving: true, terminating: true };
const STOPPED = { ready: false, serving: false, terminating: true };
const NOT_READY = { ready: false, serving: false, terminating: false };

test('ready hosts HEALTHY, serving-terminating DRAINING, the rest omitted', (t) => {
  const service = svc([
    ep('10.0.0.3', NOT_READY),
    ep('10.0.0.2', SERVING_TERMINATING),
    ep('10.0.0.1', READY),
    ep('10.0.0.4', STOPPED),
  ]);
  t.deepEqual(summary(service), ['10.0.0.1:8080 HEALTHY ready', '10.0.0.2:8080 DRAINING terminating']);
});

test('terminatingServing: omit drops serving-terminating hosts while ready ones exist', (t) => {
  const service = svc([ep('10.0.0.1', READY), ep('10.0.0.2', SERVING_TERMINATING)]);
  t.deepEqual(summary(service, { terminatingServing: 'omit', terminatingFallback: true }), [
    '10.0.0.1:8080 HEALTHY ready',
  ]);
});

test('no ready host: serving-terminating hosts are sent HEALTHY (KEP-1669 fallback)', (t) => {
  const service = svc([
    ep('10.0.0.2', SERVING_TERMINATING),
    ep('10.0.0.3', STOPPED),
    ep('10.0.0.4', NOT_READY),
  ]);
  t.deepEqual(summary(service), ['10.0.0.2:8080 HEALTHY terminating-fallback']);
});

test('fallback off: no ready host leaves serving-terminating hosts DRAINING', (t) => {
  const service = svc([ep('10.0.0.2', SERVING_TERMINATING)]);
  t.deepEqual(summary(service, { terminatingServing: 'draining', terminatingFallback: false }), [
    '10.0.0.2:8080 DRAINING terminating',
  ]);
});

test('serving=false never sent, even as the last endpoint', (t) => {
  t.deepEqual(summary(svc([ep('10.0.0.4', STOPPED)])), []);
});

test('duplicate address keeps the most eligible copy once', (t) => {
  const service = svc([ep('10.0.0.1', SERVING_TERMINATING), ep('10.0.0.1', READY), ep('10.0.0.1', READY)]);
  t.deepEqual(summary(service), ['10.0.0.1:8080 HEALTHY ready']);
});

test('per-endpoint port overrides and endpoints without the port', (t) => {
  const service = svc([
    ep('10.0.0.1', READY, { ports: { http: 9090 } }),
    ep('10.0.0.2', READY, { ports: { metrics: 9100 } }),
    ep('fd00::1', READY),
  ]);
  t.deepEqual(summary(service), ['10.0.0.1:9090 HEALTHY ready', 'fd00::1:8080 HEALTHY ready']);
});

test("gate-pending endpoints (only readygate's gate missing) are sent HEALTHY; terminating ones never", (t) => {
  const service = svc([
    ep('10.0.0.1', NOT_READY, { gatePending: true }),
    ep('10.0.0.2', STOPPED, { gatePending: true }),
    ep('10.0.0.3', SERVING_TERMINATING),
  ]);
  t.deepEqual(summary(service), ['10.0.0.1:8080 HEALTHY gate-pending', '10.0.0.3:8080 DRAINING terminating']);
});

test('endpoints without an address are ignored', (t) => {
  t.deepEqual(summary(svc([{ addresses: [], conditions: READY }])), []);
});
