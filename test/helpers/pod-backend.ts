/**
 * The "container" the test node agent starts for each pod: a tiny HTTP server that answers 200 with its
 * pod name, run as its own process so that SIGTERM, SIGKILL and a closed listener are real.
 *
 * Environment (set by test/helpers/node-agent.ts):
 *   POD_NAME        name written in every response body and in the `x-pod` header
 *   LISTEN_HOST     loopback address the node agent allocated for the pod
 *   LISTEN_PORT     the container port
 *   READY_PATH      path the readiness probe uses (default /healthz): 200 until SIGTERM, then 503
 *   STARTUP_DELAY_MS  wait this long before listening, like an app that loads before it serves
 *
 * On SIGTERM it behaves like a well-written server: the listener closes at once (new connections are
 * refused), requests already in flight are answered (with `connection: close`), idle keep-alive
 * connections are closed, and the process exits when the last connection is gone. Whoever still sends new
 * requests to it after that gets a real connection error: exactly what the rollout test counts.
 */
import http from 'node:http';

const podName = process.env['POD_NAME'] ?? 'unknown';
const host = process.env['LISTEN_HOST'] ?? '127.0.0.1';
const port = Number(process.env['LISTEN_PORT'] ?? '8080');
const readyPath = process.env['READY_PATH'] ?? '/healthz';
const startupDelayMs = Number(process.env['STARTUP_DELAY_MS'] ?? '0');

let stopping = false;

const server = http.createServer((request, response) => {
  // Drain the body (none expected) so the connection can be reused.
  request.resume();
  if (stopping) response.setHeader('connection', 'close');
  if (request.url === readyPath) {
    response.writeHead(stopping ? 503 : 200, { 'content-type': 'text/plain' });
    response.end(stopping ? 'stopping\n' : 'ok\n');
    return;
  }
  response.writeHead(200, { 'content-type': 'text/plain', 'x-pod': podName });
  response.end(`${podName}\n`);
});
// Longer than Envoy's idle timeout for upstream connections would ever matter in a test; Node's default
// 5 s would close pooled connections under a quiet client and blur what the test measures.
server.keepAliveTimeout = 60_000;

function stop(signal: string): void {
  if (stopping) return;
  stopping = true;
  process.stdout.write(`${podName}: ${signal}, closing listener\n`);
  // Node ≥ 19 also closes idle keep-alive connections here; busy ones close after their response.
  server.close(() => {
    process.stdout.write(`${podName}: all connections closed, exiting\n`);
    process.exit(0);
  });
}
process.on('SIGTERM', () => {
  stop('SIGTERM');
});
process.on('SIGINT', () => {
  stop('SIGINT');
});

setTimeout(() => {
  if (stopping) {
    process.exit(0);
  }
  server.listen({ host, port, exclusive: true }, () => {
    process.stdout.write(`${podName}: listening on ${host}:${port}\n`);
  });
}, startupDelayMs);
server.on('error', (error) => {
  process.stderr.write(`${podName}: ${error.message}\n`);
  process.exit(1);
});
