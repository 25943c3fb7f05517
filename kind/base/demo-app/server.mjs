// The demo app the rollout restarts: answers 200 with its pod name, /healthz for the readiness probe.
// Runs on the readygate image's Node.js (no image of its own to build). On SIGTERM, which the kubelet sends
// only after the preStop hook (`readygate drain-wait`) returned, it stops listening, answers the requests
// already in flight and exits: a normal server, with no sleep guessed into it.
import http from 'node:http';

const pod = process.env.POD_NAME ?? 'unknown';
const port = Number(process.env.PORT ?? '8080');
let stopping = false;

const server = http.createServer((request, response) => {
  request.resume();
  if (stopping) response.setHeader('connection', 'close');
  if (request.url === '/healthz') {
    response.writeHead(stopping ? 503 : 200, { 'content-type': 'text/plain' });
    response.end(stopping ? 'stopping\n' : 'ok\n');
    return;
  }
  response.writeHead(200, { 'content-type': 'text/plain', 'x-pod': pod });
  response.end(`${pod}\n`);
});
server.keepAliveTimeout = 65_000;
server.listen(port, '0.0.0.0', () => {
  console.log(`${pod}: listening on :${port}`);
});

process.on('SIGTERM', () => {
  stopping = true;
  console.log(`${pod}: SIGTERM, closing the listener`);
  server.close(() => process.exit(0));
});
