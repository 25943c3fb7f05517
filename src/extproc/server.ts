/**
 * The `envoy.service.ext_proc.v3.ExternalProcessor/Process` server: a protocol shell around classify.
 * One gRPC stream per HTTP request (Envoy opens it lazily, only for responses the 5xx matcher lets
 * through); each `response_headers` message is answered with CONTINUE or a CONTINUE_AND_REPLACE carrying
 * the problem document. A stream that breaks the protocol ends with INVALID_ARGUMENT; nothing a peer
 * sends can throw out of a handler.
 */
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { ErrorCode, ReadygateError, errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { codecFor } from '../protos/envoy-protos.js';
import { responseFacts, type DecodedHeaderValue, type DecodedStruct } from './attributes.js';
import { classify, shortFlagNames, type Decision, type ResponseFacts } from './classify.js';
import { LogBudget } from './log-budget.js';
import { createExtprocMetrics, type ExtprocMetrics } from './metrics.js';
import { problemResponse, traceIdOf } from './problem.js';
import { reloadingServerCredentials } from '../tls/grpc-credentials.js';
import { tlsMode, type TlsReloader } from '../tls/reloader.js';

export interface ExtprocServerOptions {
  /** host:port to bind; port 0 picks a free one. */
  address: string;
  /** Include upstream address, cluster and pod in problem bodies. */
  debug?: boolean;
  logger?: Logger;
  registry?: Registry;
  /** Serve over TLS (mTLS when the material has a client CA), following the reloader's material. */
  tls?: TlsReloader;
}

export interface ExtprocServer {
  /** Bound host:port. */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Options for hosting the service on a server someone else owns (e.g. `serve` on the xDS port). */
export interface ExtprocServiceOptions {
  debug?: boolean;
  logger?: Logger;
  registry?: Registry;
}

export const EXTERNAL_PROCESSOR_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';
export const PROCESS_METHOD_PATH = `/${EXTERNAL_PROCESSOR_SERVICE}/Process`;

const identity = (bytes: Buffer): Buffer => bytes;

/**
 * Bytes in, bytes out: decoding happens in the handler so a malformed message becomes a clear
 * INVALID_ARGUMENT on its own stream instead of grpc-js's generic deserialization error.
 */
export const externalProcessorServiceDefinition: grpc.ServiceDefinition = {
  Process: {
    path: PROCESS_METHOD_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: 'process',
  },
};

interface DecodedHttpHeaders {
  headers?: { headers?: DecodedHeaderValue[] };
  attributes?: Record<string, DecodedStruct | undefined>;
  end_of_stream?: boolean;
}

interface DecodedProcessingRequest {
  request_headers?: DecodedHttpHeaders;
  response_headers?: DecodedHttpHeaders;
  request_body?: unknown;
  response_body?: unknown;
  request_trailers?: unknown;
  response_trailers?: unknown;
  attributes?: Record<string, DecodedStruct | undefined>;
}

/** The oneof members in the order Envoy may send them within one stream. */
const MESSAGE_KINDS = [
  'request_headers',
  'request_body',
  'request_trailers',
  'response_headers',
  'response_body',
  'response_trailers',
] as const;
type MessageKind = (typeof MESSAGE_KINDS)[number];
const REPEATABLE: ReadonlySet<MessageKind> = new Set(['request_body', 'response_body']);

const requestCodec = codecFor<DecodedProcessingRequest>('envoy.service.ext_proc.v3.ProcessingRequest');
const responseCodec = codecFor<object>('envoy.service.ext_proc.v3.ProcessingResponse');

/** Plain CONTINUE answers never change: encode them once. */
const CONTINUE_ANSWERS: Readonly<Record<MessageKind, Buffer>> = Object.fromEntries(
  MESSAGE_KINDS.map((kind) => [kind, responseCodec.encode({ [kind]: {} })]),
) as Record<MessageKind, Buffer>;

/** Headers that described the upstream's body and would be wrong on ours. */
const STALE_BODY_HEADERS = ['content-encoding', 'etag', 'last-modified', 'content-range'];

class ProtocolViolation extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
  }
}

interface ServiceContext {
  readonly debug: boolean;
  readonly logger: Logger;
  readonly metrics: ExtprocMetrics;
  readonly mappedLogBudget: LogBudget;
}

/** At info level, one `extproc.mapped` line per cause per this many ms. */
export const MAPPED_LOG_INTERVAL_MS = 10_000;

function messageKind(request: DecodedProcessingRequest): MessageKind {
  const present = MESSAGE_KINDS.filter((kind) => request[kind] !== undefined);
  const [only] = present;
  if (only === undefined) throw new ProtocolViolation('empty', 'ProcessingRequest has no request member set');
  if (present.length > 1) {
    throw new ProtocolViolation(
      'ambiguous',
      `ProcessingRequest sets several request members: ${present.join(', ')}`,
    );
  }
  return only;
}

function replacementAnswer(
  decision: Extract<Decision, { action: 'replace' }>,
  facts: ResponseFacts,
  debug: boolean,
): Buffer {
  const problem = problemResponse(decision, facts, { debug });
  const setHeaders = [[':status', String(problem.status)], ...Object.entries(problem.headers)].map(
    ([key, value]) => ({
      header: { key, raw_value: Buffer.from(value ?? '', 'latin1') },
      append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
    }),
  );
  if (problem.body === undefined) {
    // No body_mutation: Envoy then sends the headers alone (END_STREAM on HTTP/2). The upstream's
    // content-length described its own body, which a HEAD answer announces but never sends.
    return responseCodec.encode({
      response_headers: {
        response: {
          status: 'CONTINUE_AND_REPLACE',
          header_mutation: {
            set_headers: setHeaders,
            remove_headers: [...STALE_BODY_HEADERS, 'content-length'],
          },
        },
      },
    });
  }
  return responseCodec.encode({
    response_headers: {
      response: {
        status: 'CONTINUE_AND_REPLACE',
        header_mutation: { set_headers: setHeaders, remove_headers: STALE_BODY_HEADERS },
        body_mutation: { body: problem.body },
      },
    },
  });
}

/** Handles one Process stream; returns nothing, reports everything through the call's status. */
function handleProcessStream(call: grpc.ServerDuplexStream<Buffer, Buffer>, context: ServiceContext): void {
  let lastIndex = -1;
  let finished = false;

  const fail = (violation: ProtocolViolation): void => {
    if (finished) return;
    finished = true;
    context.metrics.protocolErrors.inc({ kind: violation.kind });
    const fields = {
      event: 'extproc.protocol_error',
      code: ErrorCode.EXTPROC_PROTOCOL,
      kind: violation.kind,
    };
    if (violation.kind === 'internal') context.logger.error(fields, violation.message);
    else context.logger.warn(fields, violation.message);
    call.emit('error', {
      name: 'ReadygateError',
      message: violation.message,
      // A bug of ours is not the peer's fault; everything else is a message the peer got wrong.
      code: violation.kind === 'internal' ? grpc.status.INTERNAL : grpc.status.INVALID_ARGUMENT,
      details: `${ErrorCode.EXTPROC_PROTOCOL}: ${violation.message}`,
    });
  };

  const answer = (bytes: Buffer): void => {
    if (!finished && !call.destroyed && call.writable) call.write(bytes);
  };

  /**
   * The answer to response_headers is the last thing readygate has to say, so the stream ends here with
   * OK (trailers, END_STREAM), which Envoy reads as "processing complete". Left open, Envoy would end it
   * with RST_STREAM(CANCEL) once it has the answer, and a server's nghttp2 counts every RST_STREAM it
   * receives against its stream-reset rate limit (the CVE-2023-44487 defence: a token bucket of 1000,
   * refilled at 33/s, node's defaults): past ~1000 streams in a burst the server sends GOAWAY and the
   * streams in flight on that connection fail (failure_mode_allow: unmapped responses).
   */
  const endAfterAnswer = (): void => {
    if (finished) return;
    finished = true;
    if (!call.destroyed && call.writable) call.end();
  };

  const onResponseHeaders = (request: DecodedProcessingRequest, started: bigint): void => {
    const message = request.response_headers;
    // Attributes ride on the ProcessingRequest since the HttpHeaders field was deprecated; accept both.
    const attributes = { ...(message?.attributes ?? {}), ...(request.attributes ?? {}) };
    const facts = responseFacts(message?.headers?.headers, attributes);
    const decision = classify(facts);
    if (decision.action === 'pass') {
      answer(CONTINUE_ANSWERS.response_headers);
      context.metrics.passed.inc({ reason: decision.reason });
      context.metrics.processingSeconds.observe(
        { outcome: 'pass' },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
      // Pass-throughs are the common case; skip building their fields unless someone reads them.
      if (context.logger.isLevelEnabled('debug')) {
        context.logger.debug(
          { event: 'extproc.pass', reason: decision.reason, ...logFields(facts) },
          'response passed',
        );
      }
      return;
    }
    answer(replacementAnswer(decision, facts, context.debug));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    context.metrics.mapped.inc({ cause: decision.cause, status: String(decision.status) });
    context.metrics.mappedByService.inc({
      service: context.metrics.serviceLabel(facts.clusterName),
      cause: decision.cause,
    });
    context.metrics.processingSeconds.observe({ outcome: 'replace' }, seconds);
    const fields = {
      event: 'extproc.mapped',
      cause: decision.cause,
      status: decision.status,
      ...logFields(facts),
      duration_us: Math.round(seconds * 1e6),
    };
    // Every mapping is counted in /metrics; at info level an outage writes one line per cause per
    // interval (with how many it left out), at debug level every mapping is logged.
    if (context.logger.isLevelEnabled('debug')) {
      context.logger.debug(fields, 'response mapped');
    } else {
      const allowed = context.mappedLogBudget.take(decision.cause, performance.now());
      if (allowed !== undefined) {
        context.logger.info({ ...fields, suppressed: allowed.suppressed }, 'response mapped');
      }
    }
  };

  call.on('data', (chunk: Buffer) => {
    if (finished) return;
    const started = process.hrtime.bigint();
    try {
      let request: DecodedProcessingRequest;
      try {
        request = requestCodec.decode(chunk);
      } catch (error) {
        throw new ProtocolViolation('malformed', `malformed ProcessingRequest: ${errorMessage(error)}`);
      }
      const kind = messageKind(request);
      const index = MESSAGE_KINDS.indexOf(kind);
      const inOrder = REPEATABLE.has(kind) ? index >= lastIndex : index > lastIndex;
      if (!inOrder) {
        const previous = MESSAGE_KINDS[lastIndex] ?? 'nothing';
        throw new ProtocolViolation(
          'out_of_order',
          `out-of-order ProcessingRequest: ${kind} after ${previous}`,
        );
      }
      lastIndex = index;
      if (kind === 'response_headers') {
        onResponseHeaders(request, started);
        endAfterAnswer();
      } else answer(CONTINUE_ANSWERS[kind]);
    } catch (error) {
      if (error instanceof ProtocolViolation) fail(error);
      else
        fail(
          new ProtocolViolation('internal', `could not process ProcessingRequest: ${errorMessage(error)}`),
        );
    }
  });
  call.on('end', () => {
    if (finished) return;
    finished = true;
    call.end();
  });
  // Envoy cancels streams when the downstream request goes away; nothing to clean up but the flag.
  call.on('cancelled', () => {
    finished = true;
  });
}

function logFields(facts: ResponseFacts): Record<string, unknown> {
  return {
    upstream_status: facts.status,
    response_flags: facts.responseFlags,
    flag_names: facts.responseFlags === undefined ? undefined : shortFlagNames(facts.responseFlags).join(','),
    code_details: facts.codeDetails,
    cluster: facts.clusterName,
    host_state: facts.hostState,
    upstream: facts.upstreamAddress,
    pod: facts.pod,
    request_id: facts.requestId,
    trace_id: traceIdOf(facts.traceparent),
  };
}

/** Registers the ExternalProcessor service on a server the caller owns and binds. */
export function addExtprocService(server: grpc.Server, options: ExtprocServiceOptions = {}): void {
  const context: ServiceContext = {
    debug: options.debug ?? false,
    logger: (options.logger ?? silentLogger).child({ component: 'extproc' }),
    metrics: createExtprocMetrics(options.registry),
    mappedLogBudget: new LogBudget(MAPPED_LOG_INTERVAL_MS),
  };
  server.addService(externalProcessorServiceDefinition, {
    Process: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      handleProcessStream(call, context);
    },
  });
}

/**
 * grpc-js settings chosen for Envoy's one-stream-per-request pattern rather than left at defaults that
 * are unbounded (streams, session memory) or costly per call (channelz).
 */
export const EXTPROC_SERVER_CHANNEL_OPTIONS: grpc.ServerOptions = {
  // Envoy multiplexes all in-flight requests' streams over few connections; this bounds memory per
  // connection and makes Envoy open another connection instead of queueing without limit.
  'grpc.max_concurrent_streams': 1000,
  // Notice a vanished Envoy within ~40 s instead of holding its connection forever.
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  // Per-call bookkeeping on a path that sees every 5xx; not needed for a single-purpose sidecar.
  'grpc.enable_channelz': 0,
  // Headers plus attributes are a few KiB; anything near this is not Envoy.
  'grpc.max_receive_message_length': 1024 * 1024,
  // Node's own default (MB); grpc-js would otherwise lift it to unlimited.
  'grpc-node.max_session_memory': 10,
};

function splitHostPort(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ReadygateError(
      ErrorCode.CONFIG_INVALID,
      `ext_proc address must be host:port, got "${address}"`,
    );
  }
  return { host, port };
}

export async function startExtprocServer(options: ExtprocServerOptions): Promise<ExtprocServer> {
  const { host } = splitHostPort(options.address);
  const server = new grpc.Server(EXTPROC_SERVER_CHANNEL_OPTIONS);
  const serviceOptions: ExtprocServiceOptions = {};
  if (options.debug !== undefined) serviceOptions.debug = options.debug;
  if (options.logger !== undefined) serviceOptions.logger = options.logger;
  if (options.registry !== undefined) serviceOptions.registry = options.registry;
  addExtprocService(server, serviceOptions);
  const port = await new Promise<number>((resolve, reject) => {
    const credentials = options.tls
      ? reloadingServerCredentials(options.tls)
      : grpc.ServerCredentials.createInsecure();
    server.bindAsync(options.address, credentials, (error, boundPort) => {
      if (error) {
        reject(
          new ReadygateError(ErrorCode.LISTEN_FAILED, `ext_proc server could not bind ${options.address}`, {
            cause: error,
          }),
        );
      } else {
        resolve(boundPort);
      }
    });
  });
  const bound = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  (options.logger ?? silentLogger).info(
    { event: 'extproc.listening', address: bound, tls: tlsMode(options.tls) },
    'ext_proc server listening',
  );
  let closing: Promise<void> | undefined;
  return {
    address: bound,
    port,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        // Streams live for one HTTP response; give in-flight ones a moment, then cut the rest.
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return closing;
    },
  };
}
