// The measurement behind bench/ledger/run (see there) for one prepared ledger: RUNS+1 starts
// of the gateway (the first may migrate the ledger: reported apart), each timed from spawn to
// the first 200 from GET /health and from GET /ready, polled every 2 ms; then, on the last
// start, GET /admin/spend and `stratus spend` timed REPORTS (5) times each. Prints one JSON object.
//   node bench/ledger/measure.mjs BIN CONFIG PORT BACKEND_PORT RUNS MASTER_KEY LOG [REPORTS]
import { spawn, execFileSync } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import http from 'node:http';

const [bin, config, port, backendPort, runsArg, masterKey, logPath, reportsArg] = process.argv.slice(2);
const RUNS = Number(runsArg);
const POLL_MS = 2;
const START_DEADLINE_MS = 60 * 60 * 1000; // a first start that backfills 10 M rows may be slow
const READY_DEADLINE_MS = 15000;
const REPORTS = Number(reportsArg || 5);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];

// The configured backends' address: readiness is a TCP connect probe, so a listener that
// answers anything with an empty 200 makes /ready meaningful. No traffic is sent.
const backend = createServer((s) => {
  s.on('error', () => {});
  s.once('data', () => s.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}'));
});
await new Promise((res, rej) => backend.once('error', rej).listen(Number(backendPort), '127.0.0.1', res));

function get(path, headers = {}) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: Number(port), path, headers, agent: false, timeout: 30 * 60000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => { req.destroy(); resolve(0); });
  });
}

async function pollUntil200(path, t0, deadline, child) {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) return null;
    if (await get(path) === 200) return ms(t0);
    if (ms(t0) > deadline) return null;
    await sleep(POLL_MS);
  }
}

function logTail() {
  try { return readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n'); } catch { return ''; }
}

async function start(keep) {
  const fd = openSync(logPath, 'a');
  const t0 = process.hrtime.bigint();
  const child = spawn(bin, ['serve', '--config', config], { stdio: ['ignore', 'ignore', fd] });
  closeSync(fd);
  const exited = new Promise((r) => child.once('exit', r));
  const health = await pollUntil200('/health', t0, START_DEADLINE_MS, child);
  if (health === null) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`no 200 from /health (gateway ${child.exitCode !== null ? `exited ${child.exitCode}` : 'timed out'}); log:\n${logTail()}`);
  }
  const ready = await pollUntil200('/ready', t0, health + READY_DEADLINE_MS, child);
  const run = { health_ms: health, ready_ms: ready };
  if (keep) run.reports = await reports();
  const t1 = process.hrtime.bigint();
  child.kill('SIGTERM');
  await exited;
  run.stop_ms = ms(t1);
  return run;
}

const QUERIES = {
  model_30d: { http: '/admin/spend?group_by=model&from=30d', cli: ['--by', 'model', '--since', '30d'] },
  customer_day_30d: { http: '/admin/spend?group_by=customer&bucket=day&from=30d', cli: ['--by', 'customer', '--bucket', 'day', '--since', '30d'] },
};

async function reports() {
  const out = {};
  for (const [name, q] of Object.entries(QUERIES)) {
    const times = [];
    for (let i = 0; i < REPORTS; i++) {
      const t0 = process.hrtime.bigint();
      const status = await get(q.http, { authorization: `Bearer ${masterKey}` });
      times.push(ms(t0));
      if (status !== 200) throw new Error(`GET ${q.http}: ${status}; log:\n${logTail()}`);
    }
    out[`http_${name}`] = { median_ms: median(times), times };
  }
  return out;
}

function cliReports() {
  const out = {};
  for (const [name, q] of Object.entries(QUERIES)) {
    const times = [];
    for (let i = 0; i < REPORTS; i++) {
      const t0 = process.hrtime.bigint();
      execFileSync(bin, ['spend', '--config', config, ...q.cli], { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 28 });
      times.push(ms(t0));
    }
    out[`cli_${name}`] = { median_ms: median(times), times };
  }
  return out;
}

try {
  const first = await start(false);
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await start(i === RUNS - 1));
  const report = { ...runs[runs.length - 1].reports, ...cliReports() };
  for (const r of runs) delete r.reports;
  process.stdout.write(JSON.stringify({ first, runs, report }) + '\n');
} finally {
  backend.close();
}
