// Live state (issue #13 item 3): GET /admin/routes shows what the running router knows — an
// open breaker with its cooldown and the failing upstream's last error, requests in flight
// during a slow answer, the latency estimate after it — and the plan a request would get;
// `stratus route explain --url` prints the offline explain's table from that live state.
// Spend report options (item 5): buckets, top-N with "other", CSV, checked against sqlite3
// queries of the ledger file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor, BIN, SCALE } from './lib/gateway.mjs';
import { importRows } from './lib/ledger-rows.mjs';

const run = promisify(execFile);
const MK = 'live-master-key-0123456789';
const auth = 'auth: { master_key: env:MK }';

let a, b, gw;
before(async () => {
  a = await startFake();
  b = await startFake();
  gw = await startGateway(config({
    extra: auth,
    backends: [{ name: 'a', url: a.url }, { name: 'b', url: b.url }],
    models: [
      // One failure opens a's breaker for a minute: the state stays put while we look.
      { name: 'flaky', cooldown: '{ failures: 1, window_ms: 60000, duration_ms: 60000 }',
        targets: [{ backend: 'a', model: 'fail-500' }, { backend: 'b', model: 'ok', price: { input: 1, output: 2 } }] },
      { name: 'slow', targets: [{ backend: 'b', model: `slow-first-byte-${Math.round(1500 * SCALE)}` }] },
      { name: 'cheap', route: 'cost', targets: [
        { backend: 'a', model: 'ok', price: { input: 3, output: 3 } },
        { backend: 'b', model: 'ok', price: { input: 1, output: 1 } }] },
    ],
  }), { env: { MK } });
});
after(async () => {
  assert.equal(await gw?.stop(), 0, 'a clean exit (ASan: no leak, no error)');
  await a?.close();
  await b?.close();
});

const get = (path, key = MK, headers = {}) => fetch(`${gw.baseURL}${path}`, {
  headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
});
const routes = async (query = '') => {
  const r = await get(`/admin/routes${query}`);
  assert.equal(r.status, 200);
  return r.json();
};
const chat = (model) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${MK}` },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
});

test('GET /admin/routes is for the master key only', async () => {
  const none = await get('/admin/routes', null);
  assert.equal(none.status, 401);
  assert.equal((await get('/admin/routes', 'sk-wrong')).status, 401);
  assert.equal((await get('/admin/routes', MK)).status, 200);
});

test('every group and target, with the plan a request would get now', async () => {
  const doc = await routes();
  assert.equal(doc.object, 'routes');
  assert.equal(doc.generation, 1);
  assert.deepEqual(doc.models.map((m) => m.name), ['flaky', 'slow', 'cheap']);
  const cheap = doc.models[2];
  assert.equal(cheap.route, 'cost');
  assert.deepEqual(cheap.plan.map((p) => p.backend), ['b', 'a'], 'cheapest first');
  assert.match(cheap.reason, /^cheapest b/);
  const [ta, tb] = cheap.targets;
  assert.equal(tb.rank, 1);
  assert.equal(ta.rank, 2);
  assert.deepEqual(tb.price, { input: 1, output: 1, source: 'config' });
  assert.match(tb.score, /expected \$0\.001256 \(1000 in \+ 256 out tokens\)/);
  assert.equal(tb.breaker, 'closed');
  assert.equal(tb.in_flight, 0);
  assert.equal(tb.latency_ewma_ms, null, 'not measured yet');
  assert.equal(tb.last_error, null);
  assert.equal(tb.engine, null, 'a remote backend reports no engine load');
  assert.equal(tb.type, 'openai');
  // Explain parameters change what the plan is made for.
  const one = await routes('?model=cheap&prompt_tokens=500&max_tokens=20');
  assert.equal(one.models.length, 1);
  assert.equal(one.request.prompt_tokens, 500);
  assert.equal(one.models[0].output_tokens, 20);
  assert.match(one.models[0].targets[1].score, /\(500 in \+ 20 out tokens\)/);
});

test('bad parameters are named; an unknown model is a 404', async () => {
  const nope = await get('/admin/routes?model=nope');
  assert.equal(nope.status, 404);
  assert.equal((await nope.json()).error.code, 'model_not_found');
  for (const [q, param] of [['endpoint=images', 'endpoint'], ['prompt_tokens=-1', 'prompt_tokens'], ['max_tokens=x', 'max_tokens']]) {
    const r = await get(`/admin/routes?${q}`);
    assert.equal(r.status, 400, q);
    assert.equal((await r.json()).error.param, param);
  }
  const typo = await get('/admin/routes?modle=cheap');
  assert.equal(typo.status, 400);
  assert.match((await typo.json()).error.message, /unknown parameter 'modle'/);
});

test('a failing upstream: open breaker, cooldown, counts and its last error', async () => {
  const r = await chat('flaky');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-stratus-backend'), 'b');
  const m = (await routes('?model=flaky')).models[0];
  const [ta, tb] = m.targets;
  assert.equal(ta.breaker, 'open');
  assert.equal(ta.state, 'open');
  assert.ok(ta.cooldown_left_ms > 50000 && ta.cooldown_left_ms <= 60000, `${ta.cooldown_left_ms}`);
  assert.equal(ta.failed, 1);
  assert.equal(ta.ok, 0);
  assert.match(ta.last_error, /^HTTP 500: internal failure/);
  assert.ok(Number.isInteger(ta.since_last_failure_ms) && ta.since_last_failure_ms >= 0);
  assert.equal(ta.rank, null);
  assert.equal(ta.skipped, 'cooling down (circuit open)');
  assert.equal(tb.ok, 1);
  assert.equal(tb.failed, 0);
  assert.equal(tb.since_last_failure_ms, null);
  assert.ok(tb.latency_ewma_ms > 0, 'measured by the answer');
  assert.deepEqual(m.plan, [{ rank: 1, target: 1, backend: 'b', model: 'ok' }]);
});

test('in_flight counts a request while it waits for its first byte', async () => {
  const pending = chat('slow');
  const during = await waitFor(async () => {
    const t = (await routes('?model=slow')).models[0].targets[0];
    return t.in_flight === 1 && t;
  }, { what: 'in_flight 1' });
  assert.equal(during.ok, 0);
  assert.equal((await pending).status, 200);
  const t = (await routes('?model=slow')).models[0].targets[0];
  assert.equal(t.in_flight, 0);
  assert.equal(t.ok, 1);
  assert.ok(t.latency_ewma_ms >= 1400 * SCALE * 0.5, `${t.latency_ewma_ms}`);
});

test('route explain --url prints the offline table with the live state', async () => {
  const env = { ...process.env, STRATUS_MASTER_KEY: MK };
  const { stdout } = await run(BIN, ['route', 'explain', '--url', gw.baseURL, '--model', 'flaky'], { env });
  assert.match(stdout, /^\(live: http:\/\/127\.0\.0\.1:\d+, config generation 1\)\n/);
  assert.match(stdout, /model 'flaky': route priority, 2 targets\n/);
  assert.match(stdout, /breaker: 1 failures in 60000 ms → cooldown 60000 ms/);
  assert.match(stdout, /\n {2}plan target +backend +breaker +health +score\n/);
  assert.match(stdout, /\n {2}- +fail-500 +a \(openai\) +open .*— skipped: cooling down \(circuit open\)\n/);
  assert.match(stdout, /\n {2}1 +ok +b \(openai\) +ok /);
  assert.match(stdout, /\nchosen: b \/ ok\nwhy: priority; first available in configured order/);
  assert.match(stdout, /\nlive:\n {2}a\/fail-500: 0 in flight; attempts ok 0, failed 1, rejected 0; ttfb ewma [\d.]+ ms; breaker open, \d+ s left\n {4}last failure [\d.]+ m?s ago: HTTP 500: internal failure/);
  // --json passes the gateway's answer through; the key may come from --config too.
  const cfgRun = await run(BIN, ['route', 'explain', '--url', gw.baseURL, '--model', 'cheap', '--config', gw.file, '--json'],
    { env: { ...process.env, MK } });
  assert.equal(JSON.parse(cfgRun.stdout).models[0].name, 'cheap');
  // No key: the gateway's 401, exit 1; an unknown model: exit 2.
  const noKey = { ...process.env };
  delete noKey.STRATUS_MASTER_KEY;
  await assert.rejects(run(BIN, ['route', 'explain', '--url', gw.baseURL, '--model', 'flaky'], { env: noKey }),
    (e) => e.code === 1 && /HTTP 401/.test(e.stderr));
  await assert.rejects(run(BIN, ['route', 'explain', '--url', gw.baseURL, '--model', 'nope'], { env }),
    (e) => e.code === 2 && /no model group 'nope'/.test(e.stderr));
  await assert.rejects(run(BIN, ['route', 'explain', '--url', 'http://127.0.0.1:1', '--model', 'x'], { env }),
    (e) => e.code === 1 && /is the gateway running/.test(e.stderr));
});

// ---- spend: buckets, top-N, CSV ------------------------------------------------------------

const HOUR = 3600000, DAY = 86400000;

// RFC 4180 reader: enough for the reports (quoted fields, doubled quotes, CRLF).
function parseCSV(text) {
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; } else if (c === '\r' && text[i + 1] === '\n') { row.push(field); rows.push(row); row = []; field = ''; i++; } else field += c;
  }
  assert.equal(field, '', 'the last line ends with CRLF');
  return rows;
}

test('spend: hour/day buckets, top-N with "other" and CSV equal the ledger', async () => {
  const s = await startGateway(config({
    extra: auth,
    backends: [{ name: 'b', url: b.url }],
    models: [{ name: 'chat', targets: [{ backend: 'b', model: 'ok', price: { input: 1000, output: 1000 } }] }],
  }), { env: { MK } });
  const db = join(dirname(s.file), 'stratus.db');
  const sql = (q) => {
    const out = execFileSync('sqlite3', ['-json', db, q], { encoding: 'utf8' });
    return out.trim() ? JSON.parse(out) : [];
  };
  try {
    // Today, through the gateway: 3 × acme, 2 × 'globex, "inc"', 1 × '=cmd' (each $0.016).
    for (const c of ['acme', 'acme', 'acme', 'globex, "inc"', 'globex, "inc"', '=cmd']) {
      const r = await fetch(`${s.baseURL}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${MK}`, 'x-stratus-customer': c },
        body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
      });
      assert.equal(r.status, 200);
    }
    await waitFor(() => sql('SELECT COUNT(*) AS n FROM requests')[0].n >= 6, { what: 'ledger rows' });
    // History, put in the ledger: two and three days ago, in two different hours each.
    const now = Date.now();
    const day0 = Math.floor(now / DAY) * DAY;
    const row = (ts, customer, cost) => ({ ts_ms: ts, request_id: 'h', customer, backend: 'b', completion_tokens: 10, cost_usd: cost });
    importRows(s.file, [row(day0 - 2 * DAY + 3 * HOUR + 5, 'acme', 0.5), row(day0 - 2 * DAY + 3 * HOUR + 7, 'initech', 0.25),
      row(day0 - 2 * DAY + 9 * HOUR, 'initech', 1), row(day0 - 3 * DAY + 1, 'umbrella', 0.125)], { MK });
    const from = day0 - 7 * DAY, to = now + 60000;
    const q = `group_by=customer&from=${from}&to=${to}`;

    // Day buckets, every group: exactly the ledger's GROUP BY.
    const admin = (path, headers = {}) => fetch(`${s.baseURL}${path}`, { headers: { authorization: `Bearer ${MK}`, ...headers } });
    const d = await (await admin(`/admin/spend?${q}&bucket=day`)).json();
    assert.equal(d.bucket, 'day');
    const ledgerDays = sql(`SELECT (ts_ms / ${DAY}) * ${DAY} AS b, customer, COUNT(*) AS n, SUM(cost_usd) AS usd FROM requests WHERE ts_ms >= ${from} AND ts_ms < ${to} GROUP BY b, customer ORDER BY b, usd DESC, customer`);
    assert.equal(d.data.length, ledgerDays.length);
    d.data.forEach((l, i) => {
      const want = ledgerDays[i];
      assert.equal(Date.parse(l.bucket), want.b);
      assert.equal(l.group, want.customer);
      assert.equal(l.requests, want.n);
      assert.ok(Math.abs(l.cost_usd - want.usd) < 1e-9);
    });
    assert.deepEqual(d.groups.map((g) => g.group), ['initech', 'acme', 'umbrella', 'globex, "inc"', '=cmd']);

    // Hour buckets with top=2: initech ($1.25) and acme ($0.548) kept, the rest "other".
    const h = await (await admin(`/admin/spend?${q}&bucket=hour&top=2`)).json();
    assert.equal(h.top, 2);
    assert.deepEqual(h.groups.map((g) => g.group), ['initech', 'acme', 'other']);
    assert.equal(h.groups[2].other_groups, 3);
    const ledgerHours = sql(`SELECT (ts_ms / ${HOUR}) * ${HOUR} AS b, CASE WHEN customer IN ('initech', 'acme') THEN customer ELSE 'other' END AS g, COUNT(*) AS n, SUM(cost_usd) AS usd FROM requests WHERE ts_ms >= ${from} AND ts_ms < ${to} GROUP BY b, g`);
    assert.equal(h.data.length, ledgerHours.length);
    for (const want of ledgerHours) {
      const got = h.data.find((l) => Date.parse(l.bucket) === want.b && l.group === want.g);
      assert.ok(got, `bucket ${new Date(want.b).toISOString()} ${want.g}`);
      assert.equal(got.requests, want.n);
      assert.ok(Math.abs(got.cost_usd - want.usd) < 1e-9);
    }
    assert.ok(Math.abs(h.total.cost_usd - sql(`SELECT SUM(cost_usd) AS t FROM requests WHERE ts_ms >= ${from} AND ts_ms < ${to}`)[0].t) < 1e-9);
    const umbrellaHour = h.data.find((l) => Date.parse(l.bucket) === day0 - 3 * DAY);
    assert.deepEqual([umbrellaHour.group, umbrellaHour.other_groups], ['other', 1]);

    // CSV, asked by name or by Accept; the CLI prints the same bytes.
    const csvRes = await admin(`/admin/spend?${q}&bucket=day&top=2&format=csv`);
    assert.equal(csvRes.status, 200);
    assert.match(csvRes.headers.get('content-type'), /^text\/csv/);
    assert.match(csvRes.headers.get('content-disposition'), /attachment; filename="spend-customer.csv"/);
    const csv = await csvRes.text();
    const byAccept = await (await admin(`/admin/spend?${q}&bucket=day&top=2`, { accept: 'text/csv' })).text();
    assert.equal(byAccept, csv);
    const rows = parseCSV(csv);
    assert.deepEqual(rows[0], ['bucket', 'customer', 'requests', 'prompt_tokens', 'completion_tokens', 'cost_usd', 'unknown_cost_requests', 'estimated_requests']);
    const dj = await (await admin(`/admin/spend?${q}&bucket=day&top=2`)).json();
    assert.equal(rows.length - 1, dj.data.length);
    dj.data.forEach((l, i) => {
      assert.equal(rows[i + 1][0], l.bucket);
      assert.equal(rows[i + 1][1], l.group);
      assert.equal(Number(rows[i + 1][2]), l.requests);
      assert.ok(Math.abs(Number(rows[i + 1][5]) - l.cost_usd) < 1e-9);
    });
    // Quoting and formula neutralising, without top (every customer named).
    const all = await (await admin(`/admin/spend?${q}&format=csv`)).text();
    assert.match(all, /\r\n"globex, ""inc""",2,22,10,0\.032,0,0\r\n/);
    assert.match(all, /\r\n'=cmd,1,11,5,0\.016,0,0\r\n/);
    const cli = execFileSync(BIN, ['spend', '--config', s.file, '--by', 'customer', '--since', String(from), '--until', String(to),
      '--bucket', 'day', '--top', '2', '--csv'], { encoding: 'utf8', env: { ...process.env, MK } });
    assert.equal(cli, csv);
    const table = execFileSync(BIN, ['spend', '--config', s.file, '--by', 'customer', '--since', String(from), '--until', String(to),
      '--bucket', 'day', '--top', '2'], { encoding: 'utf8', env: { ...process.env, MK } });
    assert.match(table, /^spend by customer per day, .*, top 2 \(the rest as "other"\)\n/);
    assert.match(table, /other \(\d groups\)/);

    // Bad options are named.
    for (const [qs, param] of [['bucket=week', 'bucket'], ['top=0', 'top'], ['top=x', 'top'], ['format=xml', 'format']]) {
      const r = await admin(`/admin/spend?${qs}`);
      assert.equal(r.status, 400, qs);
      assert.equal((await r.json()).error.param, param);
    }
  } finally {
    assert.equal(await s.stop(), 0);
  }
});
