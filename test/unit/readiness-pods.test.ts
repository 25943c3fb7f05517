/** Reading gated pods, and the decorator that marks their endpoints gate-pending for the Kubernetes source. */
import test from 'ava';
import {
  READINESS_GATE_CONDITION,
  PodGateIndex,
  readPod,
  type PodShape,
} from '../../src/sources/kubernetes-pods.js';
import type { ServiceModel } from '../../src/model/types.js';

function pod(spec: {
  name?: string;
  gates?: string[];
  conditions?: Record<string, string>;
  deleting?: boolean;
  phase?: string;
  uid?: string;
}): PodShape {
  return {
    metadata: {
      namespace: 'ns',
      name: spec.name ?? 'p',
      uid: spec.uid ?? 'u1',
      ...(spec.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: {
      readinessGates: (spec.gates ?? [READINESS_GATE_CONDITION]).map((conditionType) => ({ conditionType })),
    },
    status: {
      phase: spec.phase ?? 'Running',
      conditions: Object.entries(spec.conditions ?? {}).map(([type, status]) => ({
        type,
        status,
        lastTransitionTime: '2026-01-01T00:00:00Z',
      })),
    },
  };
}

const CR = 'ContainersReady';
const rows: [string, Parameters<typeof pod>[0], boolean][] = [
  ['containers ready, only readygate gate unmet', { conditions: { [CR]: 'True', Ready: 'False' } }, true],
  ['containers not ready: really not ready', { conditions: { [CR]: 'False' } }, false],
  ['no ContainersReady condition yet', { conditions: {} }, false],
  [
    'another gate still False: someone else holds it',
    { gates: [READINESS_GATE_CONDITION, 'other/x'], conditions: { [CR]: 'True', 'other/x': 'False' } },
    false,
  ],
  [
    'another gate True: only ours unmet',
    { gates: [READINESS_GATE_CONDITION, 'other/x'], conditions: { [CR]: 'True', 'other/x': 'True' } },
    true,
  ],
  [
    'our gate already True (Ready and the slice may lag): still sent, no flap',
    { conditions: { [CR]: 'True', [READINESS_GATE_CONDITION]: 'True' } },
    true,
  ],
  ['terminating: never gate-pending', { conditions: { [CR]: 'True' }, deleting: true }, false],
  ['finished (Succeeded)', { conditions: { [CR]: 'True' }, phase: 'Succeeded' }, false],
];
for (const [title, spec, expected] of rows) {
  test(`readPod: ${title} → gatePending ${expected}`, (t) => {
    const reading = readPod(pod(spec));
    t.true('pod' in reading);
    if ('pod' in reading) t.is(reading.pod.gatePending, expected);
  });
}

test('readPod: pods without the gate are ignored; malformed ones are reported, never thrown', (t) => {
  t.deepEqual(readPod(pod({ gates: ['other/x'] })), { ignored: 'not-gated' });
  t.deepEqual(readPod({ spec: {} }), { ignored: 'not-gated' });
  t.true('invalid' in readPod({ spec: { readinessGates: 'nope' as never } }));
  t.true('invalid' in readPod({ spec: { readinessGates: [{ conditionType: READINESS_GATE_CONDITION }] } }));
  t.true('invalid' in readPod({ ...pod({}), status: { conditions: { type: 'x' } as never } }));
  const nullEntry = readPod({
    ...pod({}),
    status: { conditions: [null, { type: 'ContainersReady', status: 'True' }] as never },
  });
  t.true('pod' in nullEntry && nullEntry.pod.gatePending, 'a null condition entry is skipped');
});

const model = (uid?: string): ServiceModel => ({
  namespace: 'ns',
  name: 'web',
  ports: [{ key: 'http', port: 80, targetPort: 8080 }],
  endpoints: [
    {
      addresses: ['10.0.0.1'],
      conditions: { ready: false },
      targetRef: { kind: 'Pod', name: 'p', namespace: 'ns', ...(uid ? { uid } : {}) },
    },
    {
      addresses: ['10.0.0.2'],
      conditions: { ready: true },
      targetRef: { kind: 'Pod', name: 'q', namespace: 'ns' },
    },
  ],
});

test('decorate marks only gate-pending pods of the same UID, and asks to rebuild the Services that use a pod', (t) => {
  const index = new PodGateIndex();
  const invalidated: string[][] = [];
  index.onInvalidate((services) => invalidated.push([...services]));
  const plain = model('u1');
  t.is(index.decorate(plain), plain, 'nothing known: the model keeps its identity');
  index.upsert(pod({ conditions: { [CR]: 'True' } }));
  t.deepEqual(invalidated, [['ns/web']]);
  const decorated = index.decorate(model('u1'));
  t.true(decorated.endpoints[0]?.gatePending);
  t.is(decorated.endpoints[1]?.gatePending, undefined);
  t.is(
    index.decorate(model('other-uid')).endpoints[0]?.gatePending,
    undefined,
    'a recreated pod of the same name',
  );
  // Containers turn unready: rebuild again; a change that keeps gatePending does not.
  index.upsert(pod({ conditions: { [CR]: 'True', Ready: 'False' } }));
  t.is(invalidated.length, 1);
  index.upsert(pod({ conditions: { [CR]: 'False' } }));
  t.is(invalidated.length, 2);
  t.is(index.decorate(model('u1')).endpoints[0]?.gatePending, undefined);
  index.upsert(pod({ conditions: { [CR]: 'True' } }));
  index.remove('ns/p');
  t.is(invalidated.length, 4);
});
