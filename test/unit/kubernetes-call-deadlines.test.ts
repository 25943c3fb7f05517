/**
 * client-node's API calls have no deadline of their own. Against an API server that accepts the
 * connection and never answers (a stuck apiserver, a blackholing proxy), the pods/status patch that
 * sets a readiness gate and the Lease calls of the leader election must give up at their deadline
 * instead of waiting forever. A silent TCP server stands in for the hung apiserver: the real
 * kube-apiserver cannot be made to hang on demand.
 */
import test from 'ava';
import { KubeConfig } from '@kubernetes/client-node';
import { ErrorCode, ReadygateError } from '../../src/errors.js';
import { LeaderElector } from '../../src/readiness/leader-election.js';
import { kubernetesPodStatusPatcher } from '../../src/readiness/readiness-gate-controller.js';
import { startSilentServer } from '../helpers/silent-server.js';

function kubeConfigFor(url: string): KubeConfig {
  const kubeConfig = new KubeConfig();
  // Plain HTTP needs skipTLSVerify in client-node's agent selection.
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: url, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
  return kubeConfig;
}

test('a pods/status patch against a silent API server fails at its deadline', async (t) => {
  const api = await startSilentServer();
  t.teardown(() => api.close());
  const patch = kubernetesPodStatusPatcher(kubeConfigFor(api.url), 300);
  const started = Date.now();
  const error = await t.throwsAsync<ReadygateError>(
    patch({ namespace: 'default', name: 'web-1', uid: 'u-1' } as Parameters<typeof patch>[0], {
      status: 'True',
      reason: 'EnvoySynced',
      message: 'ok',
    }),
  );
  const elapsed = Date.now() - started;
  t.true(error instanceof ReadygateError);
  t.is(error.code, ErrorCode.KUBERNETES_UNAVAILABLE);
  t.regex(error.message, /^patching pods\/status of default\/web-1: no answer within 300 ms$/);
  t.true(elapsed >= 290 && elapsed < 3000, `gave up after ${elapsed} ms`);
  t.is(api.accepted(), 1);
});

test('the leader election keeps retrying against a silent API server and stops promptly', async (t) => {
  const api = await startSilentServer();
  t.teardown(() => api.close());
  const elector = new LeaderElector({
    kubeConfig: kubeConfigFor(api.url),
    namespace: 'readygate',
    identity: 'replica-a',
    leaseDurationMs: 2_000,
    renewDeadlineMs: 400,
    retryPeriodMs: 50,
  }).start();
  // Each read gives up after 200 ms (half the renew deadline), so attempts follow each other.
  const deadline = Date.now() + 5_000;
  while (api.accepted() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.true(api.accepted() >= 3, `only ${api.accepted()} attempts in 5 s: a call is stuck`);
  t.false(elector.leader);
  const stopping = Date.now();
  await elector.stop();
  t.true(Date.now() - stopping < 1_000, `stop took ${Date.now() - stopping} ms`);
});
