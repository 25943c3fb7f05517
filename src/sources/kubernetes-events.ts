/**
 * `InvalidAnnotation` Events on Services (core/v1 Events, so `kubectl describe service` shows them). One
 * Event per Service, key and message: its name is derived from them, so a second replica or a restart
 * finds the Event already there and bumps its count instead of adding another.
 */
import { createHash } from 'node:crypto';
import {
  CoreV1Api,
  CoreV1Event,
  PatchStrategy,
  setHeaderOptions,
  V1EventSource,
  V1ObjectMeta,
  V1ObjectReference,
  type KubeConfig,
} from '@kubernetes/client-node';
import { ErrorCode, ReadygateError } from '../errors.js';
import type { PolicyProblem } from '../model/policy.js';
import type { ServiceKey } from '../model/types.js';
import { withDeadline } from '../net.js';
import type { PolicyProblemSink } from './policy-report.js';

/** Like the pods/status patch: client-node calls have no deadline, and a hung API must not pile them up. */
export const EVENT_WRITE_DEADLINE_MS = 10_000;

export const INVALID_ANNOTATION_REASON = 'InvalidAnnotation';

/** Event names must be DNS subdomains; the Service name plus a digest of the problem is one and is stable. */
export function invalidAnnotationEventName(service: ServiceKey, problem: PolicyProblem): string {
  const name = service.slice(service.indexOf('/') + 1);
  const digest = createHash('sha256')
    .update(`${problem.key}\u0000${problem.message}`)
    .digest('hex')
    .slice(0, 16);
  return `${name}.readygate-${digest}`;
}

export function kubernetesPolicyEvents(
  kubeConfig: KubeConfig,
  serviceUid: (service: ServiceKey) => string | undefined,
  reportingInstance: string,
  deadlineMs = EVENT_WRITE_DEADLINE_MS,
): PolicyProblemSink {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const deadline = <T>(promise: Promise<T>, what: string): Promise<T> =>
    withDeadline(
      promise,
      deadlineMs,
      what,
      () =>
        new ReadygateError(ErrorCode.KUBERNETES_UNAVAILABLE, `${what}: no answer within ${deadlineMs} ms`),
    );
  return async (service, problem) => {
    const slash = service.indexOf('/');
    const namespace = service.slice(0, slash);
    const serviceName = service.slice(slash + 1);
    const name = invalidAnnotationEventName(service, problem);
    const now = new Date();
    const uid = serviceUid(service);
    try {
      await deadline(
        core.createNamespacedEvent({
          namespace,
          body: invalidAnnotationEvent({
            namespace,
            name,
            serviceName,
            uid,
            problem,
            now,
            reportingInstance,
          }),
        }),
        `creating Event ${namespace}/${name}`,
      );
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
      // Seen before (another replica, or before a restart): count it again, as kubelet's recorder does.
      const existing = await deadline(
        core.readNamespacedEvent({ name, namespace }),
        `reading Event ${namespace}/${name}`,
      );
      await deadline(
        core.patchNamespacedEvent(
          { name, namespace, body: { count: (existing.count ?? 1) + 1, lastTimestamp: now } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
        `patching Event ${namespace}/${name}`,
      );
    }
  };
}

/** client-node's model classes, filled in (its serializer expects instances, not literals). */
function invalidAnnotationEvent(fields: {
  namespace: string;
  name: string;
  serviceName: string;
  uid: string | undefined;
  problem: PolicyProblem;
  now: Date;
  reportingInstance: string;
}): CoreV1Event {
  const metadata = new V1ObjectMeta();
  metadata.name = fields.name;
  metadata.namespace = fields.namespace;
  // kubectl describe finds Events by kind, name, namespace and uid.
  const involved = new V1ObjectReference();
  involved.apiVersion = 'v1';
  involved.kind = 'Service';
  involved.name = fields.serviceName;
  involved.namespace = fields.namespace;
  if (fields.uid !== undefined) involved.uid = fields.uid;
  const source = new V1EventSource();
  source.component = 'readygate';
  const event = new CoreV1Event();
  event.metadata = metadata;
  event.involvedObject = involved;
  event.reason = INVALID_ANNOTATION_REASON;
  event.message = `${fields.problem.message}; readygate uses the default`;
  event.type = 'Warning';
  event.count = 1;
  event.firstTimestamp = fields.now;
  event.lastTimestamp = fields.now;
  event.source = source;
  event.reportingComponent = 'readygate.io/control-plane';
  event.reportingInstance = fields.reportingInstance;
  return event;
}

function isAlreadyExists(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 409;
}
