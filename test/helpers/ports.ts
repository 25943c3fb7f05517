/**
 * Free loopback ports for processes that need a port number up front (Envoy bootstraps, upstreams that
 * must refuse). The port is free when returned; another process could take it before it is used, so
 * callers bind promptly, and ports handed out here are never handed out twice in the same process.
 */
import net from 'node:net';

const handedOut = new Set<string>();

/** A loopback address in 127.0.0.0/8; the whole range answers on Linux's `lo`. */
export function loopbackAddress(last = 1): string {
  if (!Number.isInteger(last) || last < 1 || last > 254) throw new RangeError(`bad loopback host ${last}`);
  return `127.0.0.${last}`;
}

async function probe(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

/** One free TCP port on `host` (default 127.0.0.1). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await probe(host);
    const key = `${host}:${port}`;
    if (port > 0 && !handedOut.has(key)) {
      handedOut.add(key);
      return port;
    }
  }
  throw new Error(`no free port found on ${host} after 50 attempts`);
}

/** `count` distinct free ports on `host`. */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort(host));
  return ports;
}
