// GET /metrics (#13 item 1): the exposition checked by Prometheus's own parser and linter
// (promtool check metrics) plus the format's rules line by line (OpenMetrics too);
// counters equal what was sent, histograms are cumulative with _count = +Inf and a plausible
// _sum, costs equal the ledger's, label values from clients are escaped and capped,
// OpenMetrics on request, metrics.auth, and live state (breakers, reloads, budgets).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { promtoolCheck, samples, find, value } from './lib/prometheus.mjs';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config } from './lib/gateway.mjs';

const run = promisify(execFile);
let up;
before(async () => { up = await startFake(); });
after(async () => { await up?.close(); });

const models = () => [
  { name: 'chat', targets: [{ backend: 'up', model: 'ok', price: { input: 2, output: 10 } }] },
  { name: 'broken', cooldown: '{ failures: 2, window_ms: 60000, duration_ms: 60000 }',
    targets: [{ backend: 'up', model: 'fail-500', price: { input: 1, output: 1 } }] },
];
const yaml = (extra = '') => config({ backends: [{ name: 'up', url: up.url }], models: models(), extra });
const post = (gw, body, headers = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body),
});
const chat = (gw, model, extra = {}, headers = {}) => post(gw, { model, messages: [{ role: 'user', content: 'hi' }], ...extra }, headers);

async function scrape(gw, headers = {}) {
  const res = await fetch(`${gw.baseURL}/metrics`, { headers });
  const text = await res.text();
  return { res, text };
}

// The exposition rules a scraper relies on, checked on the raw text: every sample belongs to
// the family whose TYPE came last (and each family appears once), names are valid.
function checkFormat(text) {
  const seen = new Set();
  let family = null, type = null;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
    if (t) {
      assert.ok(!seen.has(t[1]), `family ${t[1]} appears once`);
      seen.add(t[1]);
      [family, type] = [t[1], t[2]];
      continue;
    }
    if (line.startsWith('# HELP ') || line === '# EOF') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|NaN|\+Inf|-Inf)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    let base = type === 'histogram' ? m[1].replace(/_(bucket|sum|count)$/, '') : m[1];
    if (type === 'counter' && !family.endsWith('_total')) base = base.replace(/_total$/, ''); // OpenMetrics
    assert.equal(base, family, `${m[1]} belongs to the family declared before it (${family})`);
  }
  return seen;
}

async function valid(text) {
  const { code, output } = await promtoolCheck(text);
  assert.equal(code, 0, `promtool check metrics: ${output}`);
  checkFormat(text);
  return samples(text);
}

// A histogram's series: buckets (le → count) in order, sum and count.
function histogram(all, name, labels) {
  const buckets = find(all, `${name}_bucket`, labels).map((s) => [s.labels.le, s.value]);
  return { buckets, sum: value(all, `${name}_sum`, labels), count: value(all, `${name}_count`, labels) };
}

test('counters equal what was sent; histograms are cumulative and consistent; cost matches the ledger', async () => {
  const gw = await startGateway(yaml());
  try {
    for (let i = 0; i < 5; i++) assert.equal((await chat(gw, 'chat')).status, 200);
    for (let i = 0; i < 3; i++) {
      const res = await chat(gw, 'chat', { stream: true, stream_options: { include_usage: true } });
      assert.equal(res.status, 200);
      await res.text();
    }
    for (let i = 0; i < 2; i++) assert.equal((await chat(gw, 'nope')).status, 404);
    assert.equal((await chat(gw, 'broken')).status, 502);
    const { res, text } = await scrape(gw);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const p = await valid(text);
    assert.match(text, /^# TYPE stratus_requests_total counter$/m);
    assert.equal(value(p, 'stratus_requests_total', { surface: 'openai', model: 'chat', backend: 'up', status: '200' }), 8);
    assert.equal(value(p, 'stratus_requests_total', { model: '', status: '404' }), 2,
      'unknown models share model="" (no series per client-chosen name)');
    assert.equal(value(p, 'stratus_requests_total', { model: 'broken', status: '502' }), 1);
    assert.equal(value(p, 'stratus_refusals_total', { code: 'model_not_found' }), 2);

    const duration = histogram(p, 'gen_ai_server_request_duration_seconds', { model: 'chat', backend: 'up' });
    const counts = duration.buckets.map(([, v]) => v);
    assert.equal(duration.buckets.at(-1)[0], '+Inf');
    for (let i = 1; i < counts.length; i++) assert.ok(counts[i] >= counts[i - 1], 'buckets are cumulative');
    assert.equal(counts.at(-1), duration.count, '+Inf bucket = _count');
    assert.equal(duration.count, 8);
    assert.ok(duration.sum > 0 && duration.sum < 8 * 10, '_sum is plausible');
    const ttft = histogram(p, 'gen_ai_server_time_to_first_token_seconds', { model: 'chat', backend: 'up' });
    assert.equal(ttft.count, 8);
    assert.ok(ttft.sum <= duration.sum, 'first tokens come before ends');

    // The fake reports 11 prompt + 5 completion tokens (non-stream) and 11 + 3 (stream).
    const input = histogram(p, 'gen_ai_client_token_usage', { model: 'chat', gen_ai_token_type: 'input' });
    const output = histogram(p, 'gen_ai_client_token_usage', { model: 'chat', gen_ai_token_type: 'output' });
    assert.equal(input.count, 8);
    assert.equal(input.sum, 8 * 11);
    assert.equal(output.sum, 5 * 5 + 3 * 3);

    // Cost: the same dollars the ledger holds.
    const { stdout } = await run('sqlite3', [join(dirname(gw.file), 'stratus.db'),
      "select printf('%.10f', sum(cost_usd)) from requests where model = 'chat' and status = 200"]);
    const cost = value(p, 'stratus_cost_usd_total', { model: 'chat', backend: 'up' });
    assert.ok(Math.abs(cost - Number(stdout.trim())) < 1e-9, `metrics ${cost} = ledger ${stdout.trim()}`);
    assert.ok(cost > 0);

    assert.equal(value(p, 'stratus_target_attempts_total', { model: 'broken', outcome: 'failed' }), 1);
    assert.ok([0, 1].includes(value(p, 'stratus_backend_up', { backend: 'up', type: 'openai' })));
    assert.equal(value(p, 'stratus_ledger_rows_dropped_total', {}), 0);
    assert.ok(value(p, 'process_resident_memory_bytes', {}) > 1e6);
    assert.ok(value(p, 'process_open_fds', {}) > 3);
    assert.equal(value(p, 'stratus_build_info', {}), 1);
    assert.equal(value(p, 'stratus_config_generation', {}), 1);
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('client-chosen label values are escaped and capped (customers beyond metrics.customers are "other")', async () => {
  const gw = await startGateway(yaml('metrics: { customers: 2 }'));
  try {
    const names = ['a"quote\\slash', 'plain', 'third', 'fourth'];
    for (const c of names) assert.equal((await chat(gw, 'chat', {}, { 'x-stratus-customer': c })).status, 200);
    const { text } = await scrape(gw);
    const p = await valid(text);
    assert.match(text, /customer="a\\"quote\\\\slash"/, 'quote and backslash escaped in the text');
    const series = find(p, 'stratus_customer_cost_usd_total').map((m) => m.labels.customer).sort();
    assert.deepEqual(series, ['a"quote\\slash', 'other', 'plain']);
    const perRequest = value(p, 'stratus_customer_cost_usd_total', { customer: 'plain' });
    assert.ok(Math.abs(value(p, 'stratus_customer_cost_usd_total', { customer: 'other' }) - 2 * perRequest) < 1e-12,
      'the two customers past the cap are summed into other');
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('OpenMetrics when asked; metrics.auth asks for the master key', async () => {
  const MK = 'metrics-master-key-0123456789';
  const gw = await startGateway(yaml('auth: { master_key: env:MK }\nmetrics: { auth: true }'), { env: { MK } });
  try {
    const denied = await scrape(gw);
    assert.equal(denied.res.status, 401);
    const { res, text } = await scrape(gw, { authorization: `Bearer ${MK}`, accept: 'application/openmetrics-text; version=1.0.0' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/openmetrics-text; version=1\.0\.0/);
    assert.ok(text.endsWith('# EOF\n'));
    assert.match(text, /^# TYPE stratus_requests counter$/m, 'OpenMetrics names counter families without _total');
    assert.match(text, /^stratus_metrics_series_dropped_total 0$/m, 'counter samples keep _total');
    checkFormat(text);
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('live state: an open breaker, budgets, reloads', async () => {
  const gw = await startGateway(yaml('budgets:\n  - { team: ml, limit_usd: 3, period: daily }'));
  try {
    for (let i = 0; i < 2; i++) assert.equal((await chat(gw, 'broken')).status, 502);
    let p = await valid((await scrape(gw)).text);
    assert.equal(value(p, 'stratus_target_breaker_state', { model: 'broken', backend: 'up', target_model: 'fail-500' }), 2,
      'two failures open the breaker (2 = open)');
    assert.equal(value(p, 'stratus_target_breaker_state', { model: 'chat' }), 0);
    assert.equal(value(p, 'stratus_budget_limit_usd', { scope: 'team', name: 'ml', period: 'daily' }), 3);
    assert.equal(value(p, 'stratus_budget_remaining_usd', { scope: 'team', name: 'ml', period: 'daily' }), 3);
    const resets = value(p, 'stratus_budget_resets_at_seconds', { name: 'ml' });
    assert.ok(resets > Date.now() / 1000 && resets <= Date.now() / 1000 + 86400);

    writeFileSync(gw.file, yaml('budgets:\n  - { team: ml, limit_usd: 3, period: daily }\nguards: { input: { deny: [x] } }'));
    const r = await fetch(`${gw.baseURL}/admin/reload`, { method: 'POST' });
    assert.equal(r.status, 200);
    p = await valid((await scrape(gw)).text);
    assert.equal(value(p, 'stratus_config_generation', {}), 2);
    assert.equal(value(p, 'stratus_config_reloads_total', { result: 'ok' }), 1);
    assert.equal(value(p, 'stratus_target_breaker_state', { model: 'broken' }), 2, 'the breaker survives the reload');
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('a large exposition (600 routing targets) is streamed in slices and is still one valid exposition', async () => {
  const backends = Array.from({ length: 30 }, (_, i) => ({ name: `b${i}`, url: up.url }));
  const many = Array.from({ length: 20 }, (_, m) => ({
    name: `m${m}`, targets: backends.map((b) => ({ backend: b.name, model: 'ok' })),
  }));
  const gw = await startGateway(config({ backends, models: many }));
  try {
    assert.equal((await chat(gw, 'm3')).status, 200);
    const { res, text } = await scrape(gw);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), null, 'streamed (chunked), not sized');
    const p = await valid(text);
    assert.equal(find(p, 'stratus_target_breaker_state').length, 600);
    assert.equal(find(p, 'stratus_target_attempts_total').length, 1800);
    assert.equal(value(p, 'stratus_target_attempts_total', { model: 'm3', backend: 'b0', outcome: 'ok' }), 1);
    assert.equal(value(p, 'stratus_requests_total', { model: 'm3', status: '200' }), 1);
    assert.equal(value(p, 'stratus_build_info', {}), 1, 'the tail after the slices is there');
    const om = await scrape(gw, { accept: 'application/openmetrics-text' });
    assert.ok(om.text.endsWith('# EOF\n'));
    assert.equal((om.text.match(/# EOF/g) ?? []).length, 1, 'one EOF, at the end');
    checkFormat(om.text);
    // Scrapes in parallel with other requests: every one completes.
    const results = await Promise.all([
      ...Array.from({ length: 4 }, () => scrape(gw).then((r) => r.text.length)),
      ...Array.from({ length: 20 }, () => fetch(`${gw.baseURL}/health`).then((r) => r.status)),
    ]);
    assert.ok(results.slice(0, 4).every((n) => n === text.length || Math.abs(n - text.length) < 2000));
    assert.ok(results.slice(4).every((s) => s === 200));
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});
