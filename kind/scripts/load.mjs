#!/usr/bin/env node
// Bounded constant-rate HTTP load for scripts/rollout-check.sh: keep-alive, capped concurrency, stops at
// SIGTERM/SIGINT or --max-seconds, whichever is first. Writes (and prints) counts per status code; exits 1
// if any request got no 2xx answer.
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080/' },
    rps: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '16' },
    'max-seconds': { type: 'string', default: '240' },
    out: { type: 'string' },
    // Only echoed in the result, so a saved result says which setup it measured (rollout-check's SETUP).
    setup: { type: 'string', default: 'readygate' },
  },
});
const url = new URL(values.url);
const rps = Math.max(1, Number(values.rps));
const concurrency = Math.max(1, Number(values.concurrency));
const maxMs = Math.max(1, Number(values['max-seconds'])) * 1000;
const maxRequests = Math.ceil((rps * maxMs) / 1000);

const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const counts = {};
const byPod = {};
let sent = 0;
let skipped = 0;
let inFlight = 0;
const started = performance.now();

const count = (key) => {
  counts[key] = (counts[key] ?? 0) + 1;
};

function send() {
  sent++;
  inFlight++;
  const request = http.get(url, { agent, timeout: 10_000 }, (response) => {
    let body = '';
    response.setEncoding('utf8');
    response.on('data', (chunk) => (body += chunk));
    response.on('end', () => {
      count(String(response.statusCode));
      if (response.statusCode >= 200 && response.statusCode < 300) {
        const pod = body.trim();
        byPod[pod] = (byPod[pod] ?? 0) + 1;
      }
      inFlight--;
    });
  });
  request.on('timeout', () => request.destroy(new Error('timeout')));
  request.on('error', (error) => {
    count(error.code ?? 'error');
    inFlight--;
  });
}

const timer = setInterval(() => {
  const elapsed = performance.now() - started;
  if (elapsed >= maxMs || sent + skipped >= maxRequests) {
    finish();
    return;
  }
  const due = Math.floor((elapsed * rps) / 1000) - sent - skipped;
  for (let i = 0; i < due; i++) {
    if (inFlight >= concurrency) skipped++;
    else send();
  }
}, 10);

let finishing = false;
function finish() {
  if (finishing) return;
  finishing = true;
  clearInterval(timer);
  const deadline = performance.now() + 12_000;
  const wait = setInterval(() => {
    if (inFlight > 0 && performance.now() < deadline) return;
    clearInterval(wait);
    agent.destroy();
    const answered = Object.values(counts).reduce((a, b) => a + b, 0);
    const ok = Object.entries(counts)
      .filter(([code]) => /^2\d\d$/.test(code))
      .reduce((sum, [, n]) => sum + n, 0);
    const result = {
      setup: values.setup,
      seconds: Math.round((performance.now() - started) / 100) / 10,
      sent,
      skippedAtConcurrencyCap: skipped,
      unanswered: sent - answered,
      ok,
      non2xx: sent - ok,
      statuses: counts,
      byPod,
    };
    const text = `${JSON.stringify(result, null, 2)}\n`;
    if (values.out) writeFileSync(values.out, text);
    else process.stdout.write(text);
    process.exit(result.non2xx > 0 ? 1 : 0);
  }, 50);
}
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
