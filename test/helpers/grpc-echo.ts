/**
 * A gRPC echo service for the grpc-js xDS client tests: WhoAmI answers with the host the server is bound
 * to, so a test sees which endpoint a call reached. Bytes in and out, no protobuf.
 */
import * as grpc from '@grpc/grpc-js';

const WHO_AM_I = {
  path: '/readygate.test.Echo/WhoAmI',
  requestStream: false,
  responseStream: false,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
};
export const echoDefinition = { WhoAmI: WHO_AM_I };

/** A gRPC server on `host:port` that answers WhoAmI with its own host. */
export async function echoServer(host: string, port: number): Promise<grpc.Server> {
  const server = new grpc.Server();
  server.addService(echoDefinition, {
    WhoAmI: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      callback(null, Buffer.from(host));
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (error) => {
      if (error) reject(error);
      else resolve();
    });
  });
  return server;
}
