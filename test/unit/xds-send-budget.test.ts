import test from 'ava';
import { startControlPlaneFixture } from '../helpers/control-plane-fixture.js';
import { TypeUrl } from '../../src/xds/resource-types.js';
import { DrainWatch, SendBudget } from '../../src/xds/send-budget.js';
import { endpoint, service } from '../helpers/model-fixtures.js';
import { unpack } from '../helpers/xds-client.js';

type Cla = {
  endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string } } } }[] }[];
};
const addresses = (cla: Cla): string[] =>
  cla.endpoints.flatMap((l) => l.lb_endpoints.map((e) => e.endpoint.address.socket_address.address));

test('with a one-byte send budget every stream is still served, and ends on the latest state', async (t) => {
  // Every response exceeds the budget, so streams take turns: each waits for the previous write.
  const { store, client } = await startControlPlaneFixture(t, [service('web', [endpoint('127.0.0.2')])], {
    maxPendingBytes: 1,
  });
  const streams = Array.from({ length: 5 }, () => client.sotw());
  streams.forEach((s, i) => {
    s.send({ node: { id: `envoy-${i}` }, type_url: TypeUrl.ENDPOINT, resource_names: ['default/web:http'] });
  });
  const first = await Promise.all(streams.map((s) => s.next()));
  t.deepEqual(
    first.map((r) => addresses(unpack<Cla>(r.resources[0]!))),
    Array.from({ length: 5 }, () => ['127.0.0.2']),
  );

  // A burst of changes while streams wait their turn: each stream converges on the last one.
  // (One change per event-loop turn, so each is its own push rather than one coalesced update.)
  for (let i = 3; i <= 22; i++) {
    store.upsert(service('web', [endpoint(`127.0.0.${i}`)]));
    await new Promise((resolve) => setImmediate(resolve));
  }
  for (const s of streams) {
    let last: string[] = [];
    let responses = 0;
    while (last[0] !== '127.0.0.22') {
      last = addresses(unpack<Cla>((await s.next(5000)).resources[0]!));
      responses += 1;
    }
    t.true(responses >= 1 && responses <= 20, `responses: ${responses}`);
    t.true(await s.silentFor(100));
  }
});

// The budget logic itself (src/xds/send-budget.ts), without streams.

test('a connection over its own budget waits; another connection under the same total does not', (t) => {
  const total = new SendBudget(100);
  const stuck = new SendBudget(10, total);
  const healthy = new SendBudget(10, total);
  stuck.charge(12);
  t.false(stuck.available());
  t.true(healthy.available());
  t.is(total.inFlight, 12);
  const resumed: string[] = [];
  stuck.waitFor(() => resumed.push('stuck'));
  t.is(stuck.waiting, 1);
  t.is(total.waiting, 0);
  healthy.charge(5);
  healthy.release(5);
  t.deepEqual(resumed, [], 'another connection draining does not wake a connection over its own budget');
  stuck.release(12);
  t.deepEqual(resumed, ['stuck']);
  t.is(total.inFlight, 0);
});

test('when the total is used up, streams wait on it in order and its releases wake them', (t) => {
  const total = new SendBudget(20);
  const stuck = new SendBudget(100, total);
  const other = new SendBudget(100, total);
  stuck.charge(25);
  t.false(other.available());
  const resumed: string[] = [];
  other.waitFor(() => resumed.push('other-1'));
  other.waitFor(() => resumed.push('other-2'));
  t.is(total.waiting, 2, 'it has room of its own, so it waits where the block is: the total');
  t.is(other.waiting, 0);
  stuck.release(10);
  t.deepEqual(resumed, ['other-1', 'other-2'], 'resumed in order once the total has room (each re-checks)');
});

test('a stream woken by its own budget while the total is full moves to wait on the total', (t) => {
  const total = new SendBudget(20);
  const conn = new SendBudget(10, total);
  const other = new SendBudget(100, total);
  conn.charge(6);
  conn.charge(6);
  const resumed: string[] = [];
  conn.waitFor(() => resumed.push('conn'));
  t.is(conn.waiting, 1);
  other.charge(30);
  conn.release(6);
  t.deepEqual(resumed, [], 'its own budget has room, the total does not, and it still holds 6 bytes');
  t.is(total.waiting, 1);
  other.release(30);
  t.deepEqual(resumed, ['conn']);
});

test('a cancelled wait is never resumed, wherever it waited', (t) => {
  const total = new SendBudget(10);
  const conn = new SendBudget(50, total);
  const other = new SendBudget(100, total);
  other.charge(10);
  conn.charge(1);
  let resumed = 0;
  const resume = (): void => {
    resumed += 1;
  };
  conn.waitFor(resume);
  t.is(total.waiting, 1);
  conn.cancel(resume);
  t.is(total.waiting, 0);
  other.release(10);
  conn.release(1);
  t.is(resumed, 0);
});

test('a retired budget resumes none of its waiters, here or on the total, and still gives bytes back', (t) => {
  const total = new SendBudget(10);
  const dying = new SendBudget(5, total);
  const other = new SendBudget(100, total);
  const second = new SendBudget(100, total);
  const resumed: string[] = [];
  dying.charge(6);
  dying.waitFor(() => resumed.push('own'));
  other.charge(10);
  second.charge(1);
  second.waitFor(() => resumed.push('other connection'));
  dying.retire();
  dying.release(6);
  t.deepEqual(resumed, [], 'the total is still full (11 of 10)');
  other.release(10);
  t.deepEqual(resumed, ['other connection']);
  t.is(total.inFlight, 1);
  dying.waitFor(() => resumed.push('late'));
  t.is(dying.waiting, 0);
});

const STALL_MS = 1000;

test('a connection with bytes pending and no release for the bound is stalled; a release resets it', (t) => {
  const budget = new SendBudget(100);
  const watch = new DrainWatch(0);
  budget.charge(10);
  t.is(watch.verdict(0, budget, 0, STALL_MS), undefined);
  t.is(watch.verdict(999, budget, 0, STALL_MS), undefined);
  budget.charge(10);
  budget.release(10);
  t.is(watch.verdict(1500, budget, 0, STALL_MS), undefined, 'a release is progress');
  t.is(watch.verdict(2499, budget, 0, STALL_MS), undefined);
  t.is(watch.verdict(2500, budget, 0, STALL_MS), 'stalled');
});

test('an idle connection is never stalled by time alone; its clock starts at the last look with nothing pending', (t) => {
  const budget = new SendBudget(100);
  const watch = new DrainWatch(0);
  t.is(watch.verdict(50_000, budget, 0, STALL_MS), undefined);
  budget.charge(1);
  t.is(watch.verdict(50_999, budget, 0, STALL_MS), undefined);
  t.is(watch.verdict(51_000, budget, 0, STALL_MS), 'stalled');
});

test('an unanswered drain probe stalls a connection with nothing pending here', (t) => {
  const budget = new SendBudget(100);
  const watch = new DrainWatch(0);
  t.is(watch.verdict(10, budget, 999, STALL_MS), undefined);
  t.is(watch.verdict(10, budget, 1000, STALL_MS), 'stalled');
});

test('while the total is waited on, a connection at its cap is stalled at the shorter pressure bound; one below it is not', (t) => {
  const PRESSURE_MS = 200;
  const atCap = new SendBudget(100);
  const atCapWatch = new DrainWatch(0);
  atCap.charge(100);
  t.is(atCapWatch.verdict(199, atCap, 0, STALL_MS, PRESSURE_MS), undefined);
  t.is(atCapWatch.verdict(200, atCap, 0, STALL_MS), undefined, 'no pressure: the full bound');
  t.is(atCapWatch.verdict(200, atCap, 0, STALL_MS, PRESSURE_MS), 'stalled');
  // Below its cap (an Envoy slow to take its initial state in a connect storm): the full bound.
  const below = new SendBudget(100);
  const belowWatch = new DrainWatch(0);
  below.charge(99);
  t.is(belowWatch.verdict(999, below, 0, STALL_MS, PRESSURE_MS), undefined);
  t.is(belowWatch.verdict(1000, below, 0, STALL_MS, PRESSURE_MS), 'stalled');
  // An unanswered probe with nothing pending here holds none of the total: the full bound too.
  const empty = new SendBudget(100);
  const emptyWatch = new DrainWatch(0);
  t.is(emptyWatch.verdict(500, empty, 500, STALL_MS, PRESSURE_MS), undefined);
  t.is(emptyWatch.verdict(1000, empty, 1000, STALL_MS, PRESSURE_MS), 'stalled');
});
