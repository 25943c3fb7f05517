/**
 * The one place readygate's errors are defined. Every error carries a stable `code` that logs, metrics,
 * CLI messages and tests match on; messages may improve, codes do not change.
 */

export const ErrorCode = {
  /** A command-line flag, env var or config file value is invalid. */
  CONFIG_INVALID: 'RG_ERR_CONFIG_INVALID',
  /** An endpoints file could not be read or parsed. */
  SOURCE_FILE_INVALID: 'RG_ERR_SOURCE_FILE_INVALID',
  /** A Kubernetes object could not be turned into the model. */
  SOURCE_OBJECT_INVALID: 'RG_ERR_SOURCE_OBJECT_INVALID',
  /** The Kubernetes API could not be reached or refused a request. */
  KUBERNETES_UNAVAILABLE: 'RG_ERR_KUBERNETES_UNAVAILABLE',
  /** A DiscoveryRequest broke the xDS protocol (missing type URL, bad sequence). */
  XDS_PROTOCOL: 'RG_ERR_XDS_PROTOCOL',
  /** Envoy rejected a resource (NACK). */
  XDS_NACK: 'RG_ERR_XDS_NACK',
  /** A ProcessingRequest broke the ext_proc protocol. */
  EXTPROC_PROTOCOL: 'RG_ERR_EXTPROC_PROTOCOL',
  /** The Envoy descriptor bundle is missing; run `npm run build`. */
  PROTOS_MISSING: 'RG_ERR_PROTOS_MISSING',
  /** An HTTP/gRPC listener could not bind. */
  LISTEN_FAILED: 'RG_ERR_LISTEN_FAILED',
  /** `readygate status` found Envoy out of sync with the control plane. */
  STATUS_DRIFT: 'RG_ERR_STATUS_DRIFT',
  /** An Envoy admin or control-plane admin endpoint could not be read. */
  ADMIN_UNREACHABLE: 'RG_ERR_ADMIN_UNREACHABLE',
  /** The Envoy binary could not be installed or did not start (demo). */
  ENVOY_UNAVAILABLE: 'RG_ERR_ENVOY_UNAVAILABLE',
  /** drain-wait or a readiness gate gave up waiting for Envoys. */
  WAIT_TIMEOUT: 'RG_ERR_WAIT_TIMEOUT',
  /** No usable kubeconfig: not in a cluster, no --kubeconfig/KUBECONFIG/~/.kube/config, or it cannot be read. */
  KUBECONFIG_MISSING: 'RG_ERR_KUBECONFIG_MISSING',
  /** drain-wait: no readygate replica has ever routed to (or been told of) the pod: a typo, or the wrong cluster. */
  POD_UNKNOWN: 'RG_ERR_POD_UNKNOWN',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Process exit codes of the CLI (docs/cli.md). `status` and `drain-wait` tell "could not check" apart
 * from "checked, and it is wrong", so a script never takes an unreachable replica for agreement.
 */
export const ExitCode = {
  OK: 0,
  /** Checked and wrong: drift (status), Envoys still routing at the timeout (drain-wait), a failure. */
  FAILED: 1,
  /** Bad input: flags, env, config file, kubeconfig. */
  USAGE: 2,
  /** Could not check: an admin or replica unreachable or silent, an Envoy on no replica that answered. */
  UNKNOWN: 3,
  /** drain-wait: no replica knows the pod. */
  POD_UNKNOWN: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class ReadygateError extends Error {
  readonly code: ErrorCode;
  /** The CLI's exit code when this ends a command; absent = by code (usage errors 2, others 1). */
  readonly exitCode: ExitCode | undefined;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; exitCode?: ExitCode }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ReadygateError';
    this.code = code;
    this.exitCode = options?.exitCode;
  }
}

export function isReadygateError(error: unknown, code?: ErrorCode): error is ReadygateError {
  return error instanceof ReadygateError && (code === undefined || error.code === code);
}

/** A printable message for anything thrown, without a stack trace. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
