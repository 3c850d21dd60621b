// The ledger at production size (issue #16): rollups kept in the rows' transaction equal
// the raw rows' aggregates — after a mixed load, across a restart, after kill -9, after the
// upgrade backfill and after retention; budgets seeded from rollups equal the rows' sums;
// retention deletes exactly what it should while 64 clients write; export and import
// round-trip. Everything is read back with Debian's sqlite3 CLI, independently of stratus.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, writeConfig, waitFor, BIN } from './lib/gateway.mjs';

const HOUR = 3600000, DAY = 86400000;
const MK = 'sk-master-rollups-0123456789abcdef';
const env = { MK };
let up;
before(async () => { up = await startFake(); });
after(async () => { await up?.close(); });

const models = () => [
  { name: 'chat', targets: [{ backend: 'up', model: 'ok', price: { input: 1, output: 2 } }] },
  { name: 'cheap', targets: [{ backend: 'up', model: 'ok', price: { input: 0.1, output: 0.2 } }] },
  { name: 'free', targets: [{ backend: 'up', model: 'ok' }] }, // no price: unknown cost
  { name: 'broken', targets: [{ backend: 'up', model: 'fail-500' }] },
];
const yaml = (extra = '') => config({
  extra: `auth: { master_key: env:MK }\nbudgets:\n  - { customer: "*", limit_usd: 1000, period: daily }\n` +
    `  - { team: ml, limit_usd: 1000, period: monthly }\n${extra}`,
  backends: [{ name: 'up', url: up.url }], models: models(),
});

const sql = (db, q) => {
  const out = execFileSync('sqlite3', ['-json', db, q], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
};
const cli = (args) => execFileSync(BIN, args, { encoding: 'utf8', env: { ...process.env, ...env } });
const post = (gw, key, body, headers = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
  body: JSON.stringify(body),
});
async function createKey(gw, settings) {
  const r = await fetch(`${gw.baseURL}/admin/keys`, {
    method: 'POST', headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' }, body: JSON.stringify(settings),
  });
  assert.equal(r.status, 201, await r.clone().text());
  return (await r.json()).key;
}

// One request of a mixed load: models with known, cheap, unknown and failed costs, streams,
// several customers, the master key and two virtual keys (teams ml and web).
async function one(gw, keys, i) {
  const model = ['chat', 'cheap', 'free', 'broken', 'chat', 'nope'][i % 6];
  const body = { model, messages: [{ role: 'user', content: `hello ${i}` }], stream: i % 4 === 1 };
  try {
    const r = await post(gw, keys[i % keys.length], body, { 'x-stratus-customer': `c${i % 7}` });
    await r.arrayBuffer();
    return r.status;
  } catch { return 0; }
}

// Each dimension's rollup lines vs the raw rows grouped by that column: equal counts and
// tokens, costs equal to 1e-9; route classes are computed in C, so the route dimension is
// checked for its totals per bucket. @return the rows compared.
const DIMS = { model: 'model', key: 'key_id', team: 'team', customer: 'customer', backend: 'backend', target: 'target_model' };
function assertRollupsMatchRows(db, span, where = '1=1') {
  let total = 0;
  for (const [dim, col] of Object.entries(DIMS)) {
    const fromRollups = sql(db, `SELECT bucket_ms AS b, value AS v, requests AS n, errors, prompt_tokens AS pt, completion_tokens AS ct, ` +
      `cost_usd AS usd, unknown_cost AS unk, latency_ms AS lat FROM rollups WHERE span_ms = ${span} AND dim = '${dim}' ` +
      `AND ${where.replace(/ts_ms/g, 'bucket_ms')} ORDER BY b, v`);
    const fromRows = sql(db, `SELECT (ts_ms / ${span}) * ${span} AS b, ${col} AS v, COUNT(*) AS n, SUM(status >= 400) AS errors, ` +
      `SUM(COALESCE(prompt_tokens, 0)) AS pt, SUM(COALESCE(completion_tokens, 0)) AS ct, SUM(COALESCE(cost_usd, 0)) AS usd, ` +
      `SUM(cost_usd IS NULL) AS unk, SUM(latency_ms) AS lat FROM requests WHERE ${where} GROUP BY b, v ORDER BY b, v`);
    assert.ok(fromRows.length > 0, 'rows to compare');
    assert.equal(fromRollups.length, fromRows.length, `${dim} span ${span}: ${fromRollups.length} lines vs ${fromRows.length} groups`);
    fromRows.forEach((want, i) => {
      const got = fromRollups[i];
      for (const k of ['b', 'v', 'n', 'errors', 'pt', 'ct', 'unk']) assert.equal(got[k], want[k], `${dim} span ${span} line ${i} ${k}`);
      assert.ok(Math.abs(got.usd - want.usd) < 1e-9, `${dim}: cost ${got.usd} vs ${want.usd}`);
      assert.ok(Math.abs(got.lat - want.lat) < 1e-6 * Math.max(1, want.lat), `${dim}: latency ${got.lat} vs ${want.lat}`);
    });
    total = fromRows.reduce((sum, r) => sum + r.n, 0);
  }
  const routes = sql(db, `SELECT bucket_ms AS b, SUM(requests) AS n FROM rollups WHERE span_ms = ${span} AND dim = 'route' ` +
    `AND ${where.replace(/ts_ms/g, 'bucket_ms')} GROUP BY b ORDER BY b`);
  const rows = sql(db, `SELECT (ts_ms / ${span}) * ${span} AS b, COUNT(*) AS n FROM requests WHERE ${where} GROUP BY b ORDER BY b`);
  assert.deepEqual(routes, rows, `route lines per bucket, span ${span}`);
  return total;
}

test('rollups equal the rows after a mixed load, a restart and kill -9; budgets seed from them', async () => {
  let gw = await startGateway(yaml(), { env });
  const db = join(dirname(gw.file), 'stratus.db');
  const ml = await createKey(gw, { team: 'ml', budget_usd: 500, budget_period: 'daily' });
  const web = await createKey(gw, { team: 'web' });
  const keys = [MK, ml, web];
  for (let i = 0; i < 120; i += 8) await Promise.all(Array.from({ length: 8 }, (_, j) => one(gw, keys, i + j)));
  const budgetsBefore = (await (await fetch(`${gw.baseURL}/admin/budgets`, { headers: { authorization: `Bearer ${MK}` } })).json()).data;
  await gw.stop();
  assert.equal(gw.exitCode, 0);
  assert.equal(assertRollupsMatchRows(db, HOUR), 120);
  assert.equal(assertRollupsMatchRows(db, DAY), 120);

  // Restarted: budgets come back from rollups, equal to the rows' own sums and to what the
  // live counters said before the restart.
  gw = await startGateway(null, { env, file: gw.file });
  const budgets = (await (await fetch(`${gw.baseURL}/admin/budgets`, { headers: { authorization: `Bearer ${MK}` } })).json()).data;
  const dayStart = Math.floor(Date.now() / DAY) * DAY;
  const d = new Date();
  const monthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const rowSum = (col, name, from) => sql(db, `SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM requests WHERE ${col} = '${name}' AND ts_ms >= ${from}`)[0].usd;
  // (the customer "*" budget's counters are not listed: one per customer, unbounded)
  for (const b of budgets) {
    const want = b.scope === 'customer' ? rowSum('customer', b.name, dayStart)
      : b.scope === 'team' ? rowSum('team', b.name, monthStart)
        : rowSum('key_id', b.name, dayStart);
    assert.ok(Math.abs(b.used_usd - want) < 1e-9, `${b.scope} ${b.name}: seeded ${b.used_usd}, rows say ${want}`);
    const before = budgetsBefore.find((x) => x.scope === b.scope && x.name === b.name && x.period === b.period);
    assert.ok(before && Math.abs(before.used_usd - b.used_usd) < 1e-9, `${b.scope} ${b.name}: ${before?.used_usd} live vs ${b.used_usd} seeded`);
  }
  assert.ok(budgets.some((b) => b.scope === 'team' && b.name === 'ml' && b.used_usd > 0), 'team ml spent something');
  assert.ok(budgets.some((b) => b.scope === 'key' && b.used_usd > 0), 'the key with a budget spent something');

  // kill -9 under load: whatever was committed, rows and rollups committed together.
  let stop = false, i = 1000;
  const workers = Array.from({ length: 16 }, async () => { while (!stop) await one(gw, keys, i++); });
  await waitFor(() => sql(db, 'SELECT COUNT(*) AS n FROM requests')[0].n > 400, { timeout: 20000, what: 'rows under load' });
  gw.child.kill('SIGKILL');
  stop = true;
  await Promise.all(workers);
  await gw.exited;
  const n = assertRollupsMatchRows(db, HOUR);
  assert.equal(assertRollupsMatchRows(db, DAY), n);
  assert.ok(n > 400);
  // Route classes: the figures are gone, the policy and reason stay.
  const routes = sql(db, "SELECT DISTINCT value FROM rollups WHERE dim = 'route' ORDER BY value").map((r) => r.value);
  assert.ok(routes.includes('priority; first available in configured order'), routes.join(' | '));
  assert.ok(routes.every((r) => !/\(/.test(r)), routes.join(' | '));
});

test('upgrade: migration 9 folds an existing ledger into rollups', async () => {
  const gw = await startGateway(yaml(), { env });
  const db = join(dirname(gw.file), 'stratus.db');
  for (let i = 0; i < 60; i += 6) await Promise.all(Array.from({ length: 6 }, (_, j) => one(gw, [MK], i + j)));
  await gw.stop();
  // As a ledger written before rollups existed: no table, migration 9 not applied.
  execFileSync('sqlite3', [db, 'DROP TABLE rollups; DROP TABLE ledger_retention; DELETE FROM schema_migrations WHERE version = 9;']); // migration 10 stays applied
  cli(['spend', '--config', gw.file]); // opens the store: migrates
  assert.deepEqual(sql(db, 'SELECT MAX(version) AS v FROM schema_migrations'), [{ v: 10 }]);
  assert.equal(assertRollupsMatchRows(db, HOUR), 60);
  assert.equal(assertRollupsMatchRows(db, DAY), 60);
});

// Rows as `stratus ledger export` writes them, at chosen times.
function importRows(file, rows) {
  const path = join(dirname(file), `import-${Date.now()}-${Math.random()}.jsonl`);
  writeFileSync(path, rows.map(([ts, customer, usd]) => JSON.stringify({
    ts_ms: ts, request_id: `imp-${ts}`, key_id: '', team: 'hist', customer, model: 'chat', backend: 'up',
    target_model: 'ok', endpoint: 'chat/completions', status: 200, stream: false, prompt_tokens: 10,
    completion_tokens: 5, cached_tokens: null, estimated: false, cost_usd: usd, latency_ms: 1, ttft_ms: 1,
    route: 'priority; first available', guard: '', cache: '', saved_usd: null,
  })).join('\n') + '\n');
  return cli(['ledger', 'import', path, '--config', file]);
}

test('retention: old rows go in small batches while 64 clients write; their rollups stay; reports still see them', async () => {
  const file = writeConfig(yaml('store: { retention: { rows_days: 30, rollups_days: 800, every_s: 1 } }'));
  const db = join(dirname(file), 'stratus.db');
  const now = Date.now(), day0 = Math.floor(now / DAY) * DAY;
  // 5,000 rows 40 days ago (rows go, rollups stay), 10 rows 900 days ago (both go), 10 rows
  // 10 days ago (both stay).
  const rows = [];
  for (let i = 0; i < 5000; i++) rows.push([day0 - 40 * DAY + 3 * HOUR + i, `old${i % 3}`, 0.001]);
  for (let i = 0; i < 10; i++) rows.push([day0 - 900 * DAY + i, 'ancient', 1]);
  for (let i = 0; i < 10; i++) rows.push([day0 - 10 * DAY + HOUR + i, 'recent', 0.5]);
  assert.match(importRows(file, rows), /^$/); // the count goes to stderr
  assert.equal(sql(db, 'SELECT COUNT(*) AS n FROM requests')[0].n, 5020);
  const oldSpend = JSON.parse(cli(['spend', '--config', file, '--since', '60d', '--by', 'customer', '--json']));

  const gw = await startGateway(null, { env, file });
  let stop = false, i = 0, answered = 0;
  const workers = Array.from({ length: 64 }, async () => {
    while (!stop) {
      const status = await one(gw, [MK], i++);
      if (status) answered++;
    }
  });
  await gw.waitForLog((l) => l.event === 'ledger_retention', 15000);
  await new Promise((r) => setTimeout(r, 500)); // writes keep going after the run
  stop = true;
  await Promise.all(workers);
  const metrics = await (await fetch(`${gw.baseURL}/metrics`, { headers: { authorization: `Bearer ${MK}` } })).text();
  const retained = Number(/^stratus_ledger_retained_total (\d+)$/m.exec(metrics)?.[1]);
  assert.ok(retained >= 5010, `stratus_ledger_retained_total ${retained}`); // 5,010 rows + the lines of 900 days ago
  await gw.stop();
  assert.equal(gw.exitCode, 0);
  const run = gw.logs.find((l) => l.event === 'ledger_retention');
  assert.match(run.message, /^deleted \d+ rows/);

  // Exactly the rows older than 30 days went; every row written meanwhile is there.
  assert.equal(sql(db, `SELECT COUNT(*) AS n FROM requests WHERE ts_ms < ${now - 30 * DAY}`)[0].n, 0);
  assert.equal(sql(db, `SELECT COUNT(*) AS n FROM requests WHERE customer = 'recent'`)[0].n, 10);
  assert.equal(sql(db, `SELECT COUNT(*) AS n FROM requests WHERE ts_ms >= ${now - 60000}`)[0].n, answered);
  // Rollup lines: 40 days old kept, 900 days old gone.
  assert.deepEqual(sql(db, `SELECT span_ms, SUM(requests) AS n FROM rollups WHERE dim = 'customer' AND value LIKE 'old%' GROUP BY span_ms ORDER BY span_ms`),
    [{ span_ms: HOUR, n: 5000 }, { span_ms: DAY, n: 5000 }]);
  assert.equal(sql(db, `SELECT COUNT(*) AS n FROM rollups WHERE dim = 'customer' AND value = 'ancient'`)[0].n, 0);
  assert.equal(sql(db, `SELECT COUNT(*) AS n FROM rollups WHERE bucket_ms < ${now - 800 * DAY}`)[0].n, 0);
  // The rows that remain still match their rollups.
  assertRollupsMatchRows(db, HOUR, `ts_ms >= ${now - 30 * DAY + DAY}`);
  // A report over the last 60 days still counts the deleted rows (from rollups).
  const after = JSON.parse(cli(['spend', '--config', file, '--since', '60d', '--by', 'customer', '--json']));
  for (const c of ['old0', 'old1', 'old2', 'recent']) {
    const a = after.data.find((l) => l.group === c), b = oldSpend.data.find((l) => l.group === c);
    assert.equal(a.requests, b.requests, c);
    assert.ok(Math.abs(a.cost_usd - b.cost_usd) < 1e-9, c);
  }
});

test('reports read rollups between raw ends: exact for ranges that do not start or end on the hour', async () => {
  const file = writeConfig(yaml());
  const db = join(dirname(file), 'stratus.db');
  const day0 = Math.floor(Date.now() / DAY) * DAY - 5 * DAY;
  const rows = [];
  // One row every 7 minutes over three days.
  for (let t = day0; t < day0 + 3 * DAY; t += 7 * 60000) rows.push([t, `c${(t / 60000) % 4}`, ((t / 60000) % 5) / 100]);
  importRows(file, rows);
  for (const [from, to, bucket] of [[day0 + 17 * 60000, day0 + 2 * DAY + 5 * HOUR + 3 * 60000, 'day'],
    [day0 + HOUR + 1, day0 + 26 * HOUR - 1, 'hour'], [day0 + 10 * 60000, day0 + 50 * 60000, 'none'],
    [day0 - DAY, day0 + 3 * DAY, 'none']]) {
    const r = JSON.parse(cli(['spend', '--config', file, '--since', String(from), '--until', String(to), '--by', 'customer',
      '--bucket', bucket, '--json']));
    const b = bucket === 'day' ? DAY : bucket === 'hour' ? HOUR : 0;
    const want = sql(db, `SELECT ${b ? `(ts_ms / ${b}) * ${b}` : 0} AS b, customer, COUNT(*) AS n, SUM(cost_usd) AS usd FROM requests ` +
      `WHERE ts_ms >= ${from} AND ts_ms < ${to} GROUP BY b, customer ORDER BY b, customer`);
    const got = r.data.map((l) => ({ b: b ? Date.parse(l.bucket) : 0, customer: l.group, n: l.requests, usd: l.cost_usd }))
      .sort((x, y) => x.b - y.b || (x.customer < y.customer ? -1 : 1));
    assert.equal(got.length, want.length, `${from}..${to} ${bucket}`);
    got.forEach((g, k) => {
      assert.deepEqual([g.b, g.customer, g.n], [want[k].b, want[k].customer, want[k].n], `${from}..${to} ${bucket} line ${k}`);
      assert.ok(Math.abs(g.usd - want[k].usd) < 1e-9);
    });
  }
});

test('ledger export (JSONL, CSV) and import round-trip; a bad line imports nothing', async () => {
  const gw = await startGateway(yaml(), { env });
  for (let i = 0; i < 30; i += 6) await Promise.all(Array.from({ length: 6 }, (_, j) => one(gw, [MK], i + j)));
  await gw.stop();
  const jsonl = cli(['ledger', 'export', '--config', gw.file, '--since', '1h']);
  const lines = jsonl.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 30);
  assert.ok(lines.every((l, k) => k === 0 || l.ts_ms >= lines[k - 1].ts_ms), 'oldest first');
  assert.ok(lines.some((l) => l.cost_usd === null) && lines.some((l) => l.status === 502));
  const csv = cli(['ledger', 'export', '--config', gw.file, '--since', '1h', '--format', 'csv']).split('\r\n');
  assert.equal(csv[0], 'ts,ts_ms,request_id,key_id,team,customer,model,backend,target_model,endpoint,status,stream,prompt_tokens,' +
    'completion_tokens,cached_tokens,estimated,cost_usd,latency_ms,ttft_ms,route,guard,cache,saved_usd,tier,revenue_usd,margin_usd');
  assert.equal(csv.filter(Boolean).length, 31);

  const other = writeConfig(yaml());
  const path = join(dirname(other), 'rows.jsonl');
  writeFileSync(path, jsonl);
  cli(['ledger', 'import', path, '--config', other]);
  const report = (f) => JSON.parse(cli(['spend', '--config', f, '--since', '1h', '--by', 'customer', '--json'])).data;
  assert.deepEqual(report(other), report(gw.file));
  assert.equal(cli(['ledger', 'export', '--config', other, '--since', '1h']), jsonl);

  writeFileSync(path, jsonl + JSON.stringify({ ...lines[0], ts_ms: 'yesterday' }) + '\n');
  assert.throws(() => execFileSync(BIN, ['ledger', 'import', path, '--config', other], { stdio: 'pipe', env: { ...process.env, ...env } }),
    (e) => /rows\.jsonl:31: 'ts_ms' must be an integer/.test(e.stderr.toString()) && /nothing imported/.test(e.stderr.toString()));
  assert.equal(sql(join(dirname(other), 'stratus.db'), 'SELECT COUNT(*) AS n FROM requests')[0].n, 30);
});
