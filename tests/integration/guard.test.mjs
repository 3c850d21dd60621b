// Virtual keys, rate limits, budgets and spend reports, driven by the official openai SDK
// against a fake OpenAI-compatible upstream (and the real local engine for budget routing).
// Keys are managed through the admin API and the `stratus keys` CLI; the ledger is read back
// with Debian's sqlite3 CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor, BIN, SCALE } from './lib/gateway.mjs';
import { importRows } from './lib/ledger-rows.mjs';

const MK = 'test-master-key-0123456789';
const env = { MK };
const auth = 'auth: { master_key: env:MK, refresh_ms: 200 }';
const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
let up;
before(async () => { up = await startFake(); });
after(async () => { await up?.close(); });

// $1000 per 1M tokens both ways: the fake's 11 + 5 tokens cost exactly $0.016.
const PRICE = { input: 1000, output: 1000 };
const models = () => [
  { name: 'chat', targets: [{ backend: 'up', model: 'ok', price: PRICE }] },
  { name: 'other', targets: [{ backend: 'up', model: 'ok', price: PRICE }] },
  { name: 'slow', targets: [{ backend: 'up', model: 'slow-first-byte-100', price: PRICE }] },
];
const gateway = (extra = '') => startGateway(config({ extra: `${auth}\n${extra}`, backends: [{ name: 'up', url: up.url }], models: models() }), { env });

const admin = (gw, method, path, body, key = MK) => fetch(`${gw.baseURL}${path}`, {
  method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: body === undefined ? undefined : JSON.stringify(body),
});
async function createKey(gw, settings) {
  const r = await admin(gw, 'POST', '/admin/keys', settings);
  assert.equal(r.status, 201, await r.clone().text());
  return r.json();
}
const sdk = (gw, key) => new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: key, maxRetries: 0, timeout: 30000 * SCALE });
const chat = (gw, key, extra = {}, model = 'chat') => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(extra.headers ?? {}) },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...(extra.body ?? {}) }),
});
const rows = (gw, sql) => {
  const out = execFileSync('sqlite3', ['-json', join(dirname(gw.file), 'stratus.db'), sql], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
};
const cli = (args, opts = {}) => execFileSync(BIN, args, { encoding: 'utf8', env: { ...process.env, ...env }, ...opts });

test('key lifecycle: made by the master key, used through the SDK, listed without secrets, revoked, expired', async () => {
  const gw = await gateway();
  try {
    const none = await fetch(`${gw.baseURL}/admin/keys`);
    assert.equal(none.status, 401);
    assert.deepEqual((await none.json()).error.code, 'missing_api_key');
    const k = await createKey(gw, { name: 'ci', team: 'ml', models: ['chat'] });
    assert.match(k.key, /^sk-stratus-[A-Za-z0-9_-]{43}$/);
    assert.match(k.id, /^key_[0-9a-f]{16}$/);
    assert.deepEqual([k.team, k.models, k.status], ['ml', ['chat'], 'active']);

    const c = sdk(gw, k.key);
    const ok = await c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(ok.usage.total_tokens, 16);
    assert.deepEqual((await c.models.list()).data.map((m) => m.id), ['chat'], 'a key sees only its models');
    await assert.rejects(c.chat.completions.create({ model: 'other', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 403 && e.code === 'model_not_allowed' && /may not use model 'other'/.test(e.message));
    await assert.rejects(sdk(gw, 'sk-stratus-wrong').chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 401 && e.code === 'invalid_api_key');
    await assert.rejects(sdk(gw, MK.slice(0, -1)).models.list(), (e) => e.status === 401, 'a master key one character short');
    const asKey = await admin(gw, 'GET', '/admin/keys', undefined, k.key);
    assert.equal(asKey.status, 403);
    assert.equal((await asKey.json()).error.code, 'admin_only');
    // The master key may call the API too (no budget of its own).
    assert.equal((await chat(gw, MK)).status, 200);

    const list = await (await admin(gw, 'GET', '/admin/keys')).json();
    const mine = list.data.find((x) => x.id === k.id);
    assert.equal(mine.status, 'active');
    assert.ok(!('key' in mine) && !('hash' in mine), 'no secret or hash is ever listed');
    assert.ok(!JSON.stringify(list).includes(k.key.slice(11)));

    assert.equal((await admin(gw, 'DELETE', `/admin/keys/${k.id}`)).status, 200);
    await assert.rejects(c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 401 && /was revoked at/.test(e.message), 'revoked at once on this instance');
    const again = await admin(gw, 'DELETE', `/admin/keys/${k.id}`);
    assert.equal(again.status, 404);
    assert.equal((await again.json()).error.code, 'key_not_found');

    const short = await createKey(gw, { expires_in: '1s' });
    assert.equal((await chat(gw, short.key)).status, 200);
    await new Promise((r) => setTimeout(r, 1100));
    const expired = await chat(gw, short.key);
    assert.equal(expired.status, 401);
    assert.match((await expired.json()).error.message, /expired at/);

    const bad = await admin(gw, 'POST', '/admin/keys', { models: ['nope'] });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /model 'nope' is not configured/);
    const badJson = await fetch(`${gw.baseURL}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MK}` }, body: '{' });
    assert.equal(badJson.status, 400);
  } finally {
    await gw.stop();
  }
  assert.equal(gw.exitCode, 0);
  const r = rows(gw, "SELECT key_id, team, status FROM requests WHERE endpoint = 'chat/completions' ORDER BY id");
  assert.equal(r[0].team, 'ml');
  assert.match(r[0].key_id, /^key_/);
  assert.deepEqual(r.map((x) => x.status), [200, 403, 401, 200, 401, 200, 401]);
  assert.equal(r[3].key_id, 'master');
});

test('the CLI manages keys in the store; a running gateway picks changes up within refresh_ms', async () => {
  const gw = await gateway();
  try {
    const made = JSON.parse(cli(['keys', 'create', '--config', gw.file, '--team', 'ops', '--rpm', '100', '--json']));
    assert.match(made.key, /^sk-stratus-/);
    await waitFor(async () => (await chat(gw, made.key)).status === 200, { timeout: 3000 * SCALE, what: 'the CLI key to work' });
    const table = cli(['keys', 'list', '--config', gw.file]);
    assert.match(table, new RegExp(`${made.id}\\s+active\\s+-\\s+ops`));
    assert.ok(!table.includes(made.key));
    assert.equal(cli(['keys', 'revoke', '--config', gw.file, made.id]).trim(), `revoked ${made.id}`);
    await waitFor(async () => (await chat(gw, made.key)).status === 401, { timeout: 3000 * SCALE, what: 'the revocation to hold' });
    assert.throws(() => cli(['keys', 'revoke', '--config', gw.file, made.id], { stdio: 'pipe' }), /no live key/);
    assert.throws(() => cli(['keys', 'create', '--config', gw.file, '--models', 'nope'], { stdio: 'pipe' }), /model 'nope' is not configured/);
    const human = cli(['keys', 'create', '--config', gw.file, '--name', 'human']);
    assert.match(human, /^created key_[0-9a-f]{16}\nkey: sk-stratus-\S+\nThis is the only time/);
  } finally {
    await gw.stop();
  }
});

test('rate limits per key: RPM and TPM answer 429 with Retry-After and x-ratelimit headers', async () => {
  const gw = await gateway();
  try {
    const k = await createKey(gw, { rpm: 3 });
    for (let i = 0; i < 3; i++) {
      const r = await chat(gw, k.key);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-ratelimit-limit-requests'), '3');
      assert.equal(r.headers.get('x-ratelimit-remaining-requests'), String(2 - i));
    }
    await assert.rejects(sdk(gw, k.key).chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
      (e) => e.status === 429 && e.code === 'rate_limit_exceeded' && e.type === 'requests' &&
        Number(e.headers?.get?.('retry-after') ?? e.headers?.['retry-after']) >= 1 && /3 requests per minute/.test(e.message));

    const t = await createKey(gw, { tpm: 300 });
    const big = await chat(gw, t.key, { body: { max_tokens: 500 } });
    assert.equal(big.status, 429);
    assert.match((await big.json()).error.message, /more than key key_\w+'s whole limit of 300 tokens per minute/);
    const small = await chat(gw, t.key, { body: { max_tokens: 100 } });
    assert.equal(small.status, 200);
    assert.equal(small.headers.get('x-ratelimit-limit-tokens'), '300');
    // Charged ~100 + prompt up front; the fake used 16, so most of it came back.
    const next = await chat(gw, t.key, { body: { max_tokens: 250 } });
    assert.equal(next.status, 200, 'unused tokens of the first request were given back');
  } finally {
    await gw.stop();
  }
});

test('hard budget: 429 budget_exceeded with the reset time; the count survives a restart', async () => {
  let gw = await gateway();
  let k;
  try {
    k = await createKey(gw, { budget_usd: 0.03, budget_period: 'daily' });
    assert.equal((await chat(gw, k.key)).status, 200);
    assert.equal((await chat(gw, k.key)).status, 200); // $0.032 spent now
    const r = await chat(gw, k.key);
    assert.equal(r.status, 429);
    const body = await r.json();
    assert.equal(body.error.code, 'budget_exceeded');
    const tomorrow = new Date(Math.floor(Date.now() / 86400000 + 1) * 86400000).toISOString().replace('.000', '');
    assert.match(body.error.message, new RegExp(`key '${k.id}' spent \\$0\\.0320 of its \\$0\\.03 daily budget; it resets at ${tomorrow}`));
    const wait = Number(r.headers.get('retry-after'));
    assert.ok(wait > 0 && wait <= 86400, `Retry-After ${wait}`);
  } finally {
    await gw.stop();
  }
  gw = await startGateway(null, { env, file: gw.file });
  try {
    assert.equal((await chat(gw, k.key)).status, 429, 'spend comes back from the ledger at start');
  } finally {
    await gw.stop();
  }
});

test('64 concurrent requests against one team budget overshoot it by at most one reservation', async () => {
  const gw = await gateway('budgets:\n  - { team: race, limit_usd: 0.1, period: daily }');
  const k = await createKey(gw, { team: 'race' });
  const body = { max_tokens: 10 };
  const rs = await Promise.all(Array.from({ length: 64 }, () => chat(gw, k.key, { body }, 'slow')));
  const codes = rs.map((r) => r.status);
  await Promise.all(rs.map((r) => r.arrayBuffer()));
  await gw.stop();
  const okCount = codes.filter((c) => c === 200).length;
  assert.ok(okCount >= 1 && codes.filter((c) => c === 429).length >= 1, codes.join(','));
  assert.equal(okCount + codes.filter((c) => c === 429).length, 64);
  const spent = rows(gw, "SELECT SUM(cost_usd) AS usd FROM requests WHERE team = 'race'")[0].usd;
  // One reservation: the prompt estimate (body bytes / 4) plus max_tokens at $1000/1M.
  const bytes = JSON.stringify({ model: 'slow', messages: [{ role: 'user', content: 'hi' }], ...body }).length;
  const reservation = (Math.floor(bytes / 4) + 10) * 1000 / 1e6;
  assert.ok(spent <= 0.1 + reservation + 1e-9, `spent ${spent} > limit + ${reservation}`);
  assert.ok(Math.abs(spent - okCount * 0.016) < 1e-9, 'every admitted request is in the ledger at its real cost');
});

test('budgets bend routing: past the soft threshold traffic goes local; local_only when exhausted', { timeout: 120000 * SCALE }, async () => {
  assert.ok(existsSync(MODEL), `${MODEL} is missing: run make models`);
  const yaml = `log: { requests: true }\n${auth}\nbudgets:\n  - { team: ml, limit_usd: 0.05, period: daily, soft: 0.5 }\n` +
    `backends:\n  - { name: up, type: openai, base_url: "${up.url}" }\n` +
    `  - { name: local, type: local, model_path: "${MODEL}", parallel: 2, threads: 2, ctx_size: 512 }\n` +
    'models:\n' +
    '  - { name: chat, targets: [ { backend: up, model: ok, price: { input: 1000, output: 1000 } }, { backend: local, model: tiny } ] }\n' +
    '  - { name: cloud, targets: [ { backend: up, model: ok, price: { input: 1000, output: 1000 } } ] }\n';
  const gw = await startGateway(yaml, { env });
  try {
    // /ready is 200 as soon as `up` answers; the local engine is asked for by name.
    await waitFor(async () => (await (await fetch(`${gw.baseURL}/ready`)).json()).backends.find((b) => b.name === 'local').ready,
      { timeout: 60000 * SCALE, what: 'the local model' });
    const k = await createKey(gw, { team: 'ml' });
    const backends = [];
    for (let i = 0; i < 4; i++) {
      const r = await chat(gw, k.key, { body: { max_tokens: 4 } });
      assert.equal(r.status, 200);
      backends.push(r.headers.get('x-stratus-backend'));
      if (i === 3) assert.match(r.headers.get('x-stratus-route'), /team 'ml' at 64% of its \$0\.05 daily budget: local first; local/);
    }
    assert.deepEqual(backends, ['up', 'up', 'local', 'local']);

    const lo = await createKey(gw, { budget_usd: 0.01, on_exhausted: 'local_only' });
    const first = await chat(gw, lo.key, { body: { max_tokens: 4 } });
    assert.equal(first.headers.get('x-stratus-backend'), 'up');
    const second = await chat(gw, lo.key, { body: { max_tokens: 4 } });
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('x-stratus-backend'), 'local');
    assert.match(second.headers.get('x-stratus-route'), /local only/);
    const cloudOnly = await chat(gw, lo.key, {}, 'cloud');
    assert.equal(cloudOnly.status, 429);
    const e = (await cloudOnly.json()).error;
    assert.equal(e.code, 'budget_exceeded');
    assert.match(e.message, /allows local targets only, and model 'cloud' has none/);
  } finally {
    await gw.stop();
  }
});

test('spend report: /admin/spend and `stratus spend` totals equal the ledger', async () => {
  const gw = await gateway();
  try {
    const k = await createKey(gw, { team: 'ml' });
    for (const c of ['acme', 'acme', 'globex', '']) {
      assert.equal((await chat(gw, k.key, { headers: c ? { 'x-stratus-customer': c } : {} })).status, 200);
    }
    await waitFor(() => rows(gw, 'SELECT COUNT(*) AS n FROM requests')[0].n >= 4, { what: 'ledger rows' });
    const r = await (await admin(gw, 'GET', '/admin/spend?group_by=customer&from=1d')).json();
    const ledger = rows(gw, 'SELECT customer, COUNT(*) AS n, SUM(COALESCE(cost_usd, 0)) AS usd FROM requests GROUP BY customer ORDER BY customer');
    const byName = Object.fromEntries(r.data.map((l) => [l.group, l]));
    for (const l of ledger) {
      assert.equal(byName[l.customer].requests, l.n, `requests for '${l.customer}'`);
      assert.ok(Math.abs(byName[l.customer].cost_usd - l.usd) < 1e-9);
    }
    assert.ok(Math.abs(r.total.cost_usd - 4 * 0.016) < 1e-9);
    assert.equal(byName.acme.requests, 2);
    assert.ok(r.projection.projected_month_usd >= r.projection.month_to_date_usd);
    assert.equal(typeof r.anomaly.flagged, 'boolean');
    const bad = await admin(gw, 'GET', '/admin/spend?group_by=colour');
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /group_by must be model, key, team, customer, backend, route or tier/);
    assert.equal((await admin(gw, 'GET', '/admin/spend?from=yesterday')).status, 400);
    const junk = await admin(gw, 'GET', '/admin/spend?group_by');
    assert.equal(junk.status, 400);
    assert.equal((await junk.json()).error.code, 'invalid_query');
    assert.equal((await admin(gw, 'GET', '/admin/spend?group_by=team&from=2026-11-01T00%3A00%3A00Z')).status, 200, 'values are percent-decoded');
    const asKey = await admin(gw, 'GET', '/admin/spend', undefined, k.key);
    assert.equal(asKey.status, 403);

    const j = JSON.parse(cli(['spend', '--config', gw.file, '--by', 'team', '--since', '1d', '--json']));
    assert.equal(j.data.find((l) => l.group === 'ml').requests, 4);
    assert.ok(Math.abs(j.total.cost_usd - r.total.cost_usd) < 1e-9);
    const table = cli(['spend', '--config', gw.file, '--by', 'team', '--since', '7d']);
    assert.match(table, /^spend by team, /);
    assert.match(table, /\nml\s+4\s+44\s+20\s+0\.064000\s+0\n/);
    assert.match(table, /projected month end \$/);
  } finally {
    await gw.stop();
  }
});

test('without auth the gateway refuses to listen beyond loopback', async () => {
  await assert.rejects(startGateway(config({ backends: [{ name: 'up', url: up.url }], models: models() }), { args: ['--listen', '0.0.0.0:0'] }),
    /without auth would let anyone spend/);
});

test('spend report math: month-end projection and the anomaly flag, from rows put in the ledger', async () => {
  // A ledger with a known history: $0.24 a day for the past 7 days (one row every 6 hours),
  // then $5 in the last hour. The CLI reads it like any ledger.
  const gw = await gateway();
  await gw.stop();
  const db = join(dirname(gw.file), 'stratus.db');
  const now = Date.now();
  const rows = [];
  const row = (ts, cost) => rows.push({ ts_ms: ts, request_id: 'r', team: 'hist', backend: 'up', cost_usd: cost });
  for (let h = 2; h < 7 * 24 + 1; h += 6) row(now - h * 3600000, 0.06);
  row(now - 60000, 5);
  importRows(gw.file, rows, env);
  const r = JSON.parse(cli(['spend', '--config', gw.file, '--since', '30d', '--json']));
  const hourly = Number(execFileSync('sqlite3', [db, `SELECT SUM(cost_usd) FROM requests WHERE ts_ms >= ${now - 3600000 - 7 * 86400000} AND ts_ms < ${now - 3600000}`], { encoding: 'utf8' })) / 168;
  assert.ok(Math.abs(r.anomaly.trailing_hourly_usd - hourly) < 1e-6, `${r.anomaly.trailing_hourly_usd} vs ${hourly}`);
  assert.ok(Math.abs(r.anomaly.last_hour_usd - 5) < 1e-9);
  assert.equal(r.anomaly.flagged, true);
  const week = Number(execFileSync('sqlite3', [db, `SELECT SUM(cost_usd) FROM requests WHERE ts_ms >= ${now - 7 * 86400000}`], { encoding: 'utf8' }));
  assert.ok(Math.abs(r.projection.trailing_daily_usd - week / 7) < 1e-6);
  const d = new Date(now);
  const monthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const monthEnd = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  const mtd = Number(execFileSync('sqlite3', [db, `SELECT SUM(cost_usd) FROM requests WHERE ts_ms >= ${monthStart}`], { encoding: 'utf8' }));
  assert.ok(Math.abs(r.projection.month_to_date_usd - mtd) < 1e-6);
  // The report's own clock is a moment later than ours: allow a second of drift.
  const expected = mtd + (week / 7) * (monthEnd - now) / 86400000;
  assert.ok(Math.abs(r.projection.projected_month_usd - expected) < 0.001, `${r.projection.projected_month_usd} vs ${expected}`);
  // A higher factor clears the flag; the table says ANOMALY when it is set.
  assert.equal(JSON.parse(cli(['spend', '--config', gw.file, '--json', '--anomaly-factor', '1000'])).anomaly.flagged, false);
  assert.match(cli(['spend', '--config', gw.file, '--by', 'team']), /ANOMALY/);
  assert.throws(() => cli(['spend', '--config', gw.file, '--by', 'colour'], { stdio: 'pipe' }), /--by is model, key, team, customer, backend, route or tier/);
});

test('cost compare: cloud vs local monthly cost and the break-even volume', async () => {
  const f = join(dirname((await import('./lib/gateway.mjs')).writeConfig(
    'backends:\n  - { name: box, type: local, model_path: x.gguf, cost: { watts: 120, kwh_price: 0.15, hardware_price: 1500, lifetime_months: 36 } }\n' +
    '  - { name: up, type: openai, base_url: "http://127.0.0.1:1/v1" }\n' +
    'models:\n  - { name: m, targets: [ { backend: up, model: gpt-4o, price: { input: 2, output: 8 } } ] }\n')), 'stratus.yaml');
  // $/hour = 120/1000 × 0.15 + 1500 / (36 × 730) = 0.018 + 0.057078 = 0.075078; × 730 = $54.81
  const out = cli(['cost', 'compare', '--config', f, '--tokens-per-month', '100M', '--model', 'm', '--local', 'box', '--local-tokens-per-s', '40']);
  assert.match(out, /cloud  m\s+\$350\.00\/month  \(\$2\.0000 in, \$8\.0000 out per 1M; config\)/); // 75M × 2 + 25M × 8
  assert.match(out, /local  box\s+\$54\.81\/month  \(\$0\.0751\/hour/);
  assert.match(out, /break-even\s+1565\d{4} tokens\/month \(15\.7M\)/); // $54.807 / $3.5 per 1M blended
  assert.match(out, /1 machine needed/);
  assert.match(out, /verdict\s+local is cheaper/);
  // The catalogue answers for a model no target names.
  assert.match(cli(['cost', 'compare', '--config', f, '--tokens-per-month', '1M', '--model', 'gpt-4o-mini', '--local', 'box']),
    /cloud  gpt-4o-mini .*catalogue dated \d{4}-\d{2}-\d{2}\)[\s\S]*verdict\s+cloud is cheaper/);
  assert.throws(() => cli(['cost', 'compare', '--config', f, '--tokens-per-month', '1M', '--model', 'm', '--local', 'up'], { stdio: 'pipe' }),
    /'up' is not a local backend with cost:/);
  assert.throws(() => cli(['cost', 'compare', '--config', f, '--model', 'm', '--local', 'box'], { stdio: 'pipe' }), /--tokens-per-month N/);
});
