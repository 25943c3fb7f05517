/**
 * A gRPC server with one test-only method that echoes each message back prefixed with "echo:" (and ends
 * the call with INVALID_ARGUMENT on the message "fail"): the transport is exercised with grpc-js, raw
 * HTTP/2 and frame-level clients, without ADS on top.
 */
import type { ExecutionContext } from 'ava';
import { GrpcHttp2Server, type GrpcHttp2ServerOptions, GrpcStatus } from '../../src/http2/grpc-transport.js';

export const ECHO = '/test.Echo/Stream';

export interface EchoServer {
  readonly server: GrpcHttp2Server;
  readonly address: string;
  readonly port: number;
  /** onClose calls per call, in the order the calls were opened. */
  readonly closes: number[];
}

export async function echoServer(
  t: ExecutionContext,
  overrides: Partial<GrpcHttp2ServerOptions> = {},
): Promise<EchoServer> {
  const closes: number[] = [];
  const server = new GrpcHttp2Server({
    maxConcurrentStreams: 100,
    maxPartialBytesPerConnection: 1024 * 1024,
    maxReceiveMessageBytes: 64 * 1024,
    receiveWindowBytes: 256 * 1024,
    maxFrameBytes: 64 * 1024,
    keepaliveTimeMs: 30_000,
    keepaliveTimeoutMs: 10_000,
    ...overrides,
    methods: new Map([
      [
        ECHO,
        (call) => {
          const index = closes.push(0) - 1;
          return {
            onMessage: (bytes) => {
              if (bytes.toString() === 'fail') call.finish(GrpcStatus.INVALID_ARGUMENT, 'asked to fail');
              else call.write([Buffer.from('echo:'), bytes], () => undefined);
            },
            onDrain: () => undefined,
            onClose: () => {
              closes[index]! += 1;
            },
          };
        },
      ],
    ]),
  });
  const port = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.close(100));
  return { server, address: `127.0.0.1:${port}`, port, closes };
}
