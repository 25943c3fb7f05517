import test from 'ava';
import { OTHER_SERVICE_LABEL, UNKNOWN_SERVICE_LABEL, serviceLabeler } from '../../src/extproc/metrics.js';
import { traceIdOf } from '../../src/extproc/problem.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

const cases: [string, string | undefined, string | undefined][] = [
  ['version 00', `00-${TRACE_ID}-${PARENT}-01`, TRACE_ID],
  ['unsampled', `00-${TRACE_ID}-${PARENT}-00`, TRACE_ID],
  ['surrounding whitespace', ` 00-${TRACE_ID}-${PARENT}-01 `, TRACE_ID],
  ['a later version may append fields', `01-${TRACE_ID}-${PARENT}-01-extra`, TRACE_ID],
  ['version 00 may not', `00-${TRACE_ID}-${PARENT}-01-extra`, undefined],
  ['version ff', `ff-${TRACE_ID}-${PARENT}-01`, undefined],
  ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`, undefined],
  ['all-zero parent id', `00-${TRACE_ID}-${'0'.repeat(16)}-01`, undefined],
  ['uppercase', `00-${TRACE_ID.toUpperCase()}-${PARENT}-01`, undefined],
  ['missing flags', `00-${TRACE_ID}-${PARENT}`, undefined],
  ['empty', '', undefined],
  ['absent', undefined, undefined],
];
for (const [title, header, expected] of cases) {
  test(`traceparent: ${title}`, (t) => {
    t.is(traceIdOf(header), expected);
  });
}

test('service labels: namespace/name from the cluster name, bounded, the rest folded into other', (t) => {
  const label = serviceLabeler(2);
  t.is(label('shop/web:http'), 'shop/web');
  t.is(label('shop/web:8080'), 'shop/web');
  t.is(label('readygate_extproc'), 'readygate_extproc');
  t.is(label('shop/api:http'), OTHER_SERVICE_LABEL);
  t.is(label('shop/web:grpc'), 'shop/web');
  t.is(label(undefined), UNKNOWN_SERVICE_LABEL);
  t.is(label(''), UNKNOWN_SERVICE_LABEL);
});
