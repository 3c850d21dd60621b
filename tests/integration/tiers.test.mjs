// Customer tiers (docs/tiers.md): which tier a request has (key → customer table → default),
// what a tier may call (403 model_not_allowed_for_tier), and route_to keeping a free tier off
// the cloud. Two fake upstreams stand for a cloud provider and a local server; what each saw
// is read back from the fakes themselves. Keys and customers are managed through the admin
// API and the CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, readSSE, waitFor, BIN, SCALE } from './lib/gateway.mjs';

const MK = 'test-master-key-0123456789';
const env = { MK };
let cloud, local;
before(async () => { [cloud, local] = await Promise.all([startFake(), startFake()]); });
after(async () => { await Promise.all([cloud?.close(), local?.close()]); });

// On the cloud fake, `cheap` sends model "echo" and `best` sends "ok", so the fake's record
// says which group served a request.
const models = [
  { name: 'local', targets: [{ backend: 'local', model: 'ok' }] },
  { name: 'cheap', targets: [{ backend: 'cloud', model: 'echo' }] },
  { name: 'best', targets: [{ backend: 'cloud', model: 'ok' }] },
];
const TIERS = `auth: { master_key: env:MK, refresh_ms: 200 }
tiers:
  - { name: free, price: { per_request: 0 }, route_to: local, default: true }
  - { name: standard, price: { input: 1, output: 4 }, models: [local, cheap] }
  - { name: premium, price: { input: 5, output: 20 }, route_to: best }`;
const gateway = () => startGateway(config({
  extra: TIERS, backends: [{ name: 'cloud', url: cloud.url }, { name: 'local', url: local.url }], models,
}), { env });

const call = (gw, method, path, body, key = MK, headers = {}) => fetch(`${gw.baseURL}${path}`, {
  method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
  body: body === undefined ? undefined : JSON.stringify(body),
});
const chat = (gw, key, model, headers = {}, extra = {}) => call(gw, 'POST', '/v1/chat/completions',
  { model, messages: [{ role: 'user', content: 'hi' }], ...extra }, key, headers);
const cloudModels = (from) => cloud.requests.slice(from).filter((r) => r.path.endsWith('/chat/completions')).map((r) => r.body.model);
const cli = (args) => spawnSync(BIN, args, { encoding: 'utf8', env: { ...process.env, ...env } });

test('free tier (the default) is routed to the local group and never reaches the cloud fake, streams included', async () => {
  const gw = await gateway();
  try {
    const cloudBefore = cloud.requests.length, localBefore = local.requests.length;
    // No key tier, no customer entry: the default tier (free) applies, whatever group is asked.
    for (const model of ['best', 'cheap', 'local']) {
      const r = await chat(gw, MK, model);
      assert.equal(r.status, 200, await r.clone().text());
      await r.json();
    }
    const s = await chat(gw, MK, 'best', { 'x-stratus-customer': 'nobody' }, { stream: true });
    assert.equal(s.status, 200);
    const events = await readSSE(s);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(cloud.requests.length - cloudBefore, 0, 'the cloud fake saw no request');
    assert.equal(local.requests.length - localBefore, 4, 'the local fake served all four');
  } finally {
    await gw.stop();
  }
});

test('a tier\'s models list is enforced with 403 model_not_allowed_for_tier; a key\'s tier wins; premium gets the top group', async () => {
  const gw = await gateway();
  try {
    const bad = await call(gw, 'POST', '/admin/keys', { tier: 'gold' });
    assert.equal(bad.status, 400);
    const be = (await bad.json()).error;
    assert.equal(be.code, 'tier_not_found');
    assert.match(be.message, /tier 'gold' is not configured \(tiers: free, standard, premium\)/);

    const std = await (await call(gw, 'POST', '/admin/keys', { name: 'std', tier: 'standard' })).json();
    assert.equal(std.tier, 'standard');
    const no = await chat(gw, std.key, 'best');
    assert.equal(no.status, 403);
    const ne = (await no.json()).error;
    assert.deepEqual([ne.type, ne.code, ne.param], ['permission_error', 'model_not_allowed_for_tier', 'model']);
    assert.equal(ne.message, "tier 'standard' may not use model 'best'");

    const from = cloud.requests.length;
    const ok = await chat(gw, std.key, 'cheap');
    assert.equal(ok.status, 200);
    await ok.json();
    assert.deepEqual(cloudModels(from), ['echo'], 'standard reached the cheap group as asked');

    // A premium key: route_to sends every request to the best group, even one asking for cheap.
    const prem = await (await call(gw, 'POST', '/admin/keys', { tier: 'premium' })).json();
    const from2 = cloud.requests.length;
    const p = await chat(gw, prem.key, 'cheap');
    assert.equal(p.status, 200);
    await p.json();
    assert.deepEqual(cloudModels(from2), ['ok'], 'premium was served by the best group');

    // /v1/models lists what the tier may call.
    const mine = await (await call(gw, 'GET', '/v1/models', undefined, std.key)).json();
    assert.deepEqual(mine.data.map((m) => m.id), ['local', 'cheap']);
    const all = await (await call(gw, 'GET', '/v1/models', undefined, prem.key)).json();
    assert.deepEqual(all.data.map((m) => m.id), ['local', 'cheap', 'best']);
    const listed = await (await call(gw, 'GET', '/admin/keys')).json();
    assert.equal(listed.data.find((k) => k.id === prem.id).tier, 'premium');
    assert.equal(listed.data.find((k) => k.id === std.id).tier, 'standard');
  } finally {
    await gw.stop();
  }
});

test('/admin/customers maps x-stratus-customer to a tier; changes hold at once; bad input is 400', async () => {
  const gw = await gateway();
  try {
    const empty = await (await call(gw, 'GET', '/admin/customers')).json();
    assert.deepEqual(empty, { object: 'list', data: [] });

    const set = await call(gw, 'POST', '/admin/customers', { customer: 'acme corp', tier: 'premium' });
    assert.equal(set.status, 200, await set.clone().text());
    const sj = await set.json();
    assert.deepEqual([sj.customer, sj.tier], ['acme corp', 'premium']);
    assert.match(sj.updated_at, /^\d{4}-\d\d-\d\dT/);

    // The master key has no tier of its own: the customer's decides.
    let from = cloud.requests.length;
    const r = await chat(gw, MK, 'local', { 'x-stratus-customer': 'acme corp' });
    assert.equal(r.status, 200);
    await r.json();
    assert.deepEqual(cloudModels(from), ['ok'], 'acme corp (premium) was sent to the best group');
    // The OpenAI `user` field names the customer too.
    from = cloud.requests.length;
    const u = await chat(gw, MK, 'local', {}, { user: 'acme corp' });
    assert.equal(u.status, 200);
    await u.json();
    assert.deepEqual(cloudModels(from), ['ok']);

    // Re-set to standard: now 'best' is refused for acme corp.
    assert.equal((await call(gw, 'POST', '/admin/customers', { customer: 'acme corp', tier: 'standard' })).status, 200);
    const refused = await chat(gw, MK, 'best', { 'x-stratus-customer': 'acme corp' });
    assert.equal(refused.status, 403);
    assert.equal((await refused.json()).error.message, "tier 'standard' may not use model 'best'");
    const list = await (await call(gw, 'GET', '/admin/customers')).json();
    assert.deepEqual(list.data.map((c) => [c.customer, c.tier]), [['acme corp', 'standard']]);

    // Removed: the default tier (free → local) applies again.
    const del = await call(gw, 'DELETE', '/admin/customers/acme%20corp');
    assert.equal(del.status, 200);
    assert.deepEqual(await del.json(), { customer: 'acme corp', removed: true });
    const localBefore = local.requests.length;
    const back = await chat(gw, MK, 'best', { 'x-stratus-customer': 'acme corp' });
    assert.equal(back.status, 200);
    await back.json();
    assert.equal(local.requests.length - localBefore, 1);
    const again = await call(gw, 'DELETE', '/admin/customers/acme%20corp');
    assert.equal(again.status, 404);
    assert.equal((await again.json()).error.code, 'customer_not_found');

    const bad = [
      [{ customer: 'x', tier: 'gold' }, 'tier_not_found', /tier 'gold' is not configured/],
      [{ tier: 'free' }, undefined, /"customer" is required and must be a string/],
      [{ customer: 'x' }, undefined, /"tier" is required and must be a string/],
      [{ customer: '', tier: 'free' }, undefined, /"customer" must be 1 to 127 characters/],
      [{ customer: 'x', tier: 'free', colour: 'red' }, 'unknown_field', /unknown field "colour"/],
      [['x'], 'invalid_json', /must be a JSON object/],
    ];
    for (const [body, code, msg] of bad) {
      const res = await call(gw, 'POST', '/admin/customers', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      const e = (await res.json()).error;
      if (code) assert.equal(e.code, code);
      assert.match(e.message, msg);
    }
    const notJson = await fetch(`${gw.baseURL}/admin/customers`, { method: 'POST', headers: { authorization: `Bearer ${MK}` }, body: '{' });
    assert.equal(notJson.status, 400);
    assert.match((await notJson.json()).error.message, /^request body is not valid JSON: .* at line 1 column/);
    const noBody = await fetch(`${gw.baseURL}/admin/customers`, { method: 'POST', headers: { authorization: `Bearer ${MK}` } });
    assert.equal(noBody.status, 400);
    assert.match((await noBody.json()).error.message, /request body is empty/);
    // A duplicate key is refused, not silently the last one (customers and keys alike).
    for (const [path, raw] of [['/admin/customers', '{"customer":"a","customer":"b","tier":"free"}'],
      ['/admin/keys', '{"tier":"free","tier":"standard"}']]) {
      const dup = await fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${MK}` }, body: raw });
      assert.equal(dup.status, 400, path);
      assert.match((await dup.json()).error.message, /duplicate object key/);
    }
    // Admin only.
    const k = await (await call(gw, 'POST', '/admin/keys', {})).json();
    assert.equal((await call(gw, 'GET', '/admin/customers', undefined, k.key)).status, 403);
  } finally {
    await gw.stop();
  }
});

test('CLI: keys create --tier, customers set / list / remove; a running gateway picks them up', async () => {
  const gw = await gateway();
  try {
    const made = JSON.parse(execFileSync(BIN, ['keys', 'create', '--config', gw.file, '--tier', 'premium', '--json'], { encoding: 'utf8', env: { ...process.env, ...env } }));
    assert.equal(made.tier, 'premium');
    const table = cli(['keys', 'list', '--config', gw.file]);
    assert.match(table.stdout, new RegExp(`${made.id}\\s+active\\s+-\\s+-\\s+premium`));
    const badKey = cli(['keys', 'create', '--config', gw.file, '--tier', 'gold']);
    assert.equal(badKey.status, 2);
    assert.match(badKey.stderr, /tier 'gold' is not configured/);

    const set = cli(['customers', 'set', 'initech', '--tier', 'standard', '--config', gw.file]);
    assert.equal(set.status, 0, set.stderr);
    assert.equal(set.stdout.trim(), 'customer initech: tier standard');
    const listed = JSON.parse(cli(['customers', 'list', '--json', '--config', gw.file]).stdout);
    assert.deepEqual(listed.data.map((c) => [c.customer, c.tier, c.configured]), [['initech', 'standard', true]]);
    assert.match(cli(['customers', 'list', '--config', gw.file]).stdout, /^CUSTOMER\s+TIER\s+UPDATED\ninitech\s+standard\s+\d{4}-/);
    // The gateway re-reads the table with its keys (refresh_ms 200).
    await waitFor(async () => (await chat(gw, MK, 'best', { 'x-stratus-customer': 'initech' })).status === 403,
      { timeout: 5000 * SCALE, what: 'the CLI customer tier to hold' });

    const usage = [
      [['customers', 'set', 'initech', '--config', gw.file], /--tier T is required/],
      [['customers', 'set', '--tier', 'free', '--config', gw.file], /which customer\?/],
      [['customers', 'set', 'x', '--tier', 'gold', '--config', gw.file], /tier 'gold' is not configured/],
      [['customers', 'remove', 'x', '--tier', 'free', '--config', gw.file], /--tier is for 'customers set'/],
      [['customers', 'frob'], /expected list, set ID --tier T or remove ID/],
    ];
    for (const [args, msg] of usage) {
      const r = cli(args);
      assert.equal(r.status, 2, args.join(' '));
      assert.match(r.stderr, msg);
    }
    assert.equal(cli(['customers', 'remove', 'initech', '--config', gw.file]).stdout.trim(), 'removed initech');
    const gone = cli(['customers', 'remove', 'initech', '--config', gw.file]);
    assert.equal(gone.status, 1);
    assert.match(gone.stderr, /no customer 'initech'/);
  } finally {
    await gw.stop();
  }
});

// Prices that make every figure distinct: what each target costs us and what each tier
// charges, per 1M tokens (the fake answers 11 prompt tokens and 5 completion tokens, a
// stream 11 + 3).
const PRICED = [
  { name: 'local', targets: [{ backend: 'local', model: 'ok', price: { input: 100, output: 200 } }] },
  { name: 'cheap', targets: [{ backend: 'cloud', model: 'echo', price: { input: 300, output: 600 } }] },
  { name: 'best', targets: [{ backend: 'cloud', model: 'ok', price: { input: 2000, output: 8000 } }] },
];
const TIER_PRICES = {
  free: { per_request: 0.0001, input: 0, output: 0 },
  standard: { per_request: 0, input: 1000, output: 4000 },
  premium: { per_request: 0.002, input: 5000, output: 20000 },
};
const PRICED_TIERS = `auth: { master_key: env:MK, refresh_ms: 200 }
tiers:
  - { name: free, price: { per_request: 0.0001 }, route_to: local, default: true }
  - { name: standard, price: { input: 1000, output: 4000 }, models: [local, cheap] }
  - { name: premium, price: { input: 5000, output: 20000, per_request: 0.002 }, route_to: best }`;
const sqlite = (file, q) => {
  const out = execFileSync('sqlite3', ['-json', file.replace(/stratus\.yaml$/, 'stratus.db'), q], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
};
const near = (a, b, what) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} vs ${b}`);

test('the ledger records tier, revenue (tier price × usage) and margin (revenue − cost), streams included; reports equal the ledger', async () => {
  const gw = await startGateway(config({
    extra: PRICED_TIERS, backends: [{ name: 'cloud', url: cloud.url }, { name: 'local', url: local.url }], models: PRICED,
  }), { env });
  let file;
  try {
    file = gw.file;
    const prem = await (await call(gw, 'POST', '/admin/keys', { tier: 'premium' })).json();
    const std = await (await call(gw, 'POST', '/admin/keys', { tier: 'standard' })).json();
    const plain = [
      [prem.key, 'cheap', {}], [prem.key, 'local', { stream: true }],
      [std.key, 'cheap', {}], [std.key, 'local', { stream: true }],
      [MK, 'best', {}], [MK, 'cheap', { stream: true }],
    ];
    for (const [key, model, extra] of plain) {
      const r = await chat(gw, key, model, { 'x-stratus-customer': key === MK ? 'walk-in' : key === prem.key ? 'acme' : 'initech' }, extra);
      assert.equal(r.status, 200);
      await r.text();
    }
    const refused = await chat(gw, std.key, 'best', { 'x-stratus-customer': 'initech' });
    assert.equal(refused.status, 403);
    await refused.text();
    // The report over the API once the writer has every row.
    await waitFor(async () => (await (await call(gw, 'GET', '/admin/spend?group_by=tier')).json()).total?.requests === 7,
      { timeout: 5000 * SCALE, what: 'seven rows in the margin report' });
    const api = await (await call(gw, 'GET', '/admin/spend?group_by=tier')).json();
    assert.equal(api.object, 'margin_report');
    assert.deepEqual(api.data.map((l) => l.tier).sort(), ['free', 'premium', 'standard']);
    for (const [q, code] of [['group_by=tier&bucket=hour', 'bucket'], ['group_by=model&margin=1', 'group_by'], ['group_by=customer&margin=yes', 'margin'], ['group_by=tier&format=csv', 'format']]) {
      const bad = await call(gw, 'GET', `/admin/spend?${q}`);
      assert.equal(bad.status, 400, q);
      assert.equal((await bad.json()).error.param, code);
    }
  } finally {
    await gw.stop();
  }
  const rows = sqlite(file, 'SELECT tier, customer, model, status, stream, prompt_tokens AS pt, completion_tokens AS ct, cost_usd, revenue_usd, margin_usd FROM requests ORDER BY id');
  assert.equal(rows.length, 7);
  assert.deepEqual(rows.map((r) => r.tier), ['premium', 'premium', 'standard', 'standard', 'free', 'free', 'standard']);
  assert.deepEqual(rows.map((r) => r.stream), [0, 1, 0, 1, 0, 1, 0]);
  for (const r of rows) {
    const p = TIER_PRICES[r.tier];
    if (r.status >= 400) {
      assert.deepEqual([r.revenue_usd, r.margin_usd, r.cost_usd], [0, 0, 0], 'a refused request is charged nothing');
      continue;
    }
    assert.ok(r.pt > 0 && r.ct > 0 && r.cost_usd > 0, JSON.stringify(r));
    near(r.revenue_usd, p.per_request + (r.pt * p.input + r.ct * p.output) / 1e6, `revenue of ${JSON.stringify(r)}`);
    near(r.margin_usd, r.revenue_usd - r.cost_usd, 'margin = revenue − cost');
  }
  // The served group: premium → best even when it asked for cheap; free → local.
  const cost = (price, r) => (r.pt * price.input + r.ct * price.output) / 1e6;
  near(rows[0].cost_usd, cost(PRICED[2].targets[0].price, rows[0]), 'premium served by best');
  near(rows[4].cost_usd, cost(PRICED[0].targets[0].price, rows[4]), 'free served by local');

  // Margin rollups (what reports read for whole hours and days) hold the rows' sums, per
  // span and dimension.
  for (const span of [3600000, 86400000]) {
    for (const dim of ['tier', 'customer']) {
      const lines = sqlite(file, `SELECT value, SUM(requests) AS n, SUM(revenue_usd) AS rev, SUM(margin_usd) AS mar, SUM(cost_usd) AS usd FROM margin_rollups WHERE span_ms = ${span} AND dim = '${dim}' GROUP BY value ORDER BY value`);
      const raw = sqlite(file, `SELECT ${dim} AS value, COUNT(*) AS n, SUM(COALESCE(revenue_usd, 0)) AS rev, SUM(COALESCE(margin_usd, 0)) AS mar, SUM(COALESCE(cost_usd, 0)) AS usd FROM requests GROUP BY ${dim} ORDER BY ${dim}`);
      assert.deepEqual(lines.map((l) => [l.value, l.n]), raw.map((l) => [l.value, l.n]), `${dim}@${span}`);
      lines.forEach((l, i) => { near(l.rev, raw[i].rev, 'rollup revenue'); near(l.mar, raw[i].mar, 'rollup margin'); near(l.usd, raw[i].usd, 'rollup cost'); });
    }
  }
  // stratus spend --by tier: each line and the total equal the ledger's sums.
  const byTier = JSON.parse(execFileSync(BIN, ['spend', '--by', 'tier', '--json', '--config', file], { encoding: 'utf8', env: { ...process.env, ...env } }));
  for (const tier of ['free', 'standard', 'premium']) {
    const mine = rows.filter((r) => r.tier === tier);
    const line = byTier.data.find((l) => l.tier === tier);
    assert.equal(line.requests, mine.length, tier);
    near(line.revenue_usd, mine.reduce((a, r) => a + r.revenue_usd, 0), `${tier} revenue`);
    near(line.cost_usd, mine.reduce((a, r) => a + r.cost_usd, 0), `${tier} cost`);
    near(line.margin_usd, mine.reduce((a, r) => a + r.margin_usd, 0), `${tier} margin`);
  }
  near(byTier.total.revenue_usd, rows.reduce((a, r) => a + r.revenue_usd, 0), 'total revenue');
  near(byTier.total.margin_usd, rows.reduce((a, r) => a + r.margin_usd, 0), 'total margin');
  assert.equal(byTier.total.requests, 7);
  const table = execFileSync(BIN, ['spend', '--by', 'tier', '--config', file], { encoding: 'utf8', env: { ...process.env, ...env } });
  assert.match(table, /^TIER\s+REQUESTS\s+REVENUE\s+COST\s+MARGIN\s+MARGIN%\n/);
  assert.match(table, /\nTOTAL\s+7\s/);

  // By customer: the same sums per customer, and a month-end projection at least the month so far.
  const byCustomer = JSON.parse(execFileSync(BIN, ['spend', '--by', 'customer', '--margin', '--json', '--config', file], { encoding: 'utf8', env: { ...process.env, ...env } }));
  for (const customer of ['acme', 'initech', 'walk-in']) {
    const mine = rows.filter((r) => r.customer === customer);
    const line = byCustomer.data.find((l) => l.customer === customer);
    near(line.revenue_usd, mine.reduce((a, r) => a + r.revenue_usd, 0), `${customer} revenue`);
    near(line.margin_usd, mine.reduce((a, r) => a + r.margin_usd, 0), `${customer} margin`);
    assert.ok(line.projected_month.revenue_usd >= line.revenue_usd - 1e-12, `${customer} projection`);
  }
  const bad = cli(['spend', '--by', 'model', '--margin', '--config', file]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--margin groups by tier or customer only/);
});

test('route: margin — premium gets the top-quality target; a standard request whose expected cost would break its margin goes to the cheaper one; x-stratus-route says why', async () => {
  const smart = [{
    name: 'smart', route: 'margin',
    targets: [
      { backend: 'cloud', model: 'ok', price: { input: 1000, output: 1000 } },
      { backend: 'local', model: 'ok', price: { input: 1, output: 1 } },
    ],
  }];
  // Per token, premium is charged 5× the top target's price (80 % margin) and standard 1.2×
  // (17 %): below its 30 %. quality: is set by editing the generated YAML (config() has no field).
  const yaml = config({
    extra: `auth: { master_key: env:MK, refresh_ms: 200 }
tiers:
  - { name: standard, price: { input: 1200, output: 1200 }, min_margin: 0.3 }
  - { name: premium, price: { input: 5000, output: 5000 }, min_margin: 0.3 }`,
    backends: [{ name: 'cloud', url: cloud.url }, { name: 'local', url: local.url }], models: smart,
  }).replace('{ backend: cloud, model: "ok"', '{ backend: cloud, model: "ok", quality: 3').replace('{ backend: local, model: "ok"', '{ backend: local, model: "ok", quality: 1');
  assert.match(yaml, /quality: 3/);
  const gw = await startGateway(yaml, { env });
  try {
    const prem = await (await call(gw, 'POST', '/admin/keys', { tier: 'premium' })).json();
    const std = await (await call(gw, 'POST', '/admin/keys', { tier: 'standard' })).json();
    const c0 = cloud.requests.length, l0 = local.requests.length;
    const p = await chat(gw, prem.key, 'smart', {}, { max_tokens: 100 });
    assert.equal(p.status, 200);
    await p.json();
    assert.match(p.headers.get('x-stratus-route'), /^margin; tier premium: best quality keeping the margin cloud \(quality 3, expected margin 80\.0% >= 30\.0%, \$[0-9.]+\)/);
    assert.equal(cloud.requests.length - c0, 1, 'premium: the top target');

    const s = await chat(gw, std.key, 'smart', {}, { max_tokens: 100 });
    assert.equal(s.status, 200);
    await s.json();
    assert.match(s.headers.get('x-stratus-route'), /^margin; tier standard: best quality keeping the margin local \(quality 1, expected margin 99\.9% >= 30\.0%/);
    assert.equal(cloud.requests.length - c0, 1, 'standard never reached the expensive target');
    assert.equal(local.requests.length - l0, 1);

    // No tier (the master key, no default tier): as route: cost.
    const n = await chat(gw, MK, 'smart', {}, { max_tokens: 100 });
    assert.equal(n.status, 200);
    await n.json();
    assert.match(n.headers.get('x-stratus-route'), /^margin; no tier: cheapest local/);
  } finally {
    await gw.stop();
  }
});

test('DESIGN.md form: local_only: true refuses a group without self-hosted targets (403, the cloud fake untouched); customers: in the config maps a customer, the admin table overrides it', async () => {
  const gw = await startGateway(config({
    extra: `auth: { master_key: env:MK, refresh_ms: 200 }
tiers:
  - name: free
    local_only: true
    price: { input: 0, output: 0 }
  - name: premium
    price: { input: 5.0, output: 15.0 }
    min_margin: 0.3
customers:
  acme: premium
  hobbyist: free`,
    backends: [{ name: 'cloud', url: cloud.url }, { name: 'local', url: local.url }], models,
  }), { env });
  try {
    const c0 = cloud.requests.length;
    const no = await chat(gw, MK, 'best', { 'x-stratus-customer': 'hobbyist' });
    assert.equal(no.status, 403);
    const e = (await no.json()).error;
    assert.equal(e.code, 'model_not_allowed_for_tier');
    assert.equal(e.message, "tier 'free' may use local targets only, and model 'best' has none");
    const s = await chat(gw, MK, 'best', { 'x-stratus-customer': 'hobbyist' }, { stream: true });
    assert.equal(s.status, 403);
    await s.text();
    assert.equal(cloud.requests.length - c0, 0, 'the cloud fake saw nothing of the free tier');
    // acme is premium by the config: allowed.
    const ok = await chat(gw, MK, 'best', { 'x-stratus-customer': 'acme' });
    assert.equal(ok.status, 200);
    await ok.json();
    // The admin table overrides the config's map.
    assert.equal((await call(gw, 'POST', '/admin/customers', { customer: 'acme', tier: 'free' })).status, 200);
    const now = await chat(gw, MK, 'best', { 'x-stratus-customer': 'acme' });
    assert.equal(now.status, 403);
    await now.text();
    assert.equal(cloud.requests.length - c0, 1);
  } finally {
    await gw.stop();
  }
});

const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');

test('local_only with a real local engine: a mixed group serves the tier from the engine, never the cloud fake, and never from the response cache', { timeout: 120000 * SCALE }, async () => {
  assert.ok(existsSync(MODEL), `${MODEL} is missing: run make models`);
  const yaml = `log: { requests: true }
auth: { master_key: env:MK, refresh_ms: 200 }
cache: { ttl_s: 300 }
tiers:
  - { name: free, price: { per_request: 0 }, local_only: true }
  - { name: paid, price: { input: 1, output: 1 } }
customers: { hobbyist: free, payer: paid }
backends:
  - { name: cloud, type: openai, base_url: "${cloud.url}" }
  - { name: box, type: local, model_path: "${MODEL}", parallel: 2, threads: 2, ctx_size: 512 }
models:
  - { name: mixed, targets: [ { backend: cloud, model: ok }, { backend: box, model: tiny } ] }
`;
  const gw = await startGateway(yaml, { env });
  try {
    await waitFor(async () => (await (await fetch(`${gw.baseURL}/ready`)).json()).backends.find((b) => b.name === 'box').ready,
      { timeout: 60000 * SCALE, what: 'the local model' });
    const body = { max_tokens: 4, temperature: 0 };
    // The paying customer is served by the cloud target first and fills the cache.
    const c0 = cloud.requests.length;
    const paid = await chat(gw, MK, 'mixed', { 'x-stratus-customer': 'payer' }, body);
    assert.equal(paid.status, 200);
    await paid.json();
    assert.equal(paid.headers.get('x-stratus-backend'), 'cloud');
    assert.equal(paid.headers.get('x-stratus-cache'), 'miss');
    const again = await chat(gw, MK, 'mixed', { 'x-stratus-customer': 'payer' }, body);
    await again.json();
    assert.equal(again.headers.get('x-stratus-cache'), 'hit', 'the same request is cacheable');
    // The free customer asks the same: the engine answers, not the cache and not the cloud.
    for (const stream of [false, true]) {
      const free = await chat(gw, MK, 'mixed', { 'x-stratus-customer': 'hobbyist' }, { ...body, stream });
      assert.equal(free.status, 200);
      await free.text();
      assert.equal(free.headers.get('x-stratus-backend'), 'box');
      assert.equal(free.headers.get('x-stratus-cache'), 'bypass');
    }
    assert.equal(cloud.requests.length - c0, 1, 'only the paying customer reached the cloud fake');
  } finally {
    await gw.stop();
  }
});

test('functions obey tiers too: route_to moves a function\'s calls, a models list refuses one (403), the ledger row carries the tier', async () => {
  const gw = await startGateway(config({
    extra: `${TIERS}
functions:
  - { name: say, model: best, kind: text, template: "Say: {{text}}" }`,
    backends: [{ name: 'cloud', url: cloud.url }, { name: 'local', url: local.url }], models,
  }), { env });
  let file;
  try {
    file = gw.file;
    const invoke = (key, headers = {}) => fetch(`${gw.baseURL}/v1/functions/say/invoke`, {
      method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ text: 'hi' }),
    });
    const c0 = cloud.requests.length, l0 = local.requests.length;
    const free = await invoke(MK); // the default tier: free, route_to local
    assert.equal(free.status, 200, await free.clone().text());
    await free.json();
    assert.equal(cloud.requests.length - c0, 0, 'the free tier\'s function call stayed off the cloud');
    assert.equal(local.requests.length - l0, 1);
    const std = await (await call(gw, 'POST', '/admin/keys', { tier: 'standard' })).json();
    const no = await invoke(std.key);
    assert.equal(no.status, 403);
    const e = (await no.json()).error;
    assert.equal(e.code, 'model_not_allowed_for_tier');
    assert.equal(e.message, "tier 'standard' may not call function 'say' (model 'best')");
    const prem = await (await call(gw, 'POST', '/admin/keys', { tier: 'premium' })).json();
    const p = await invoke(prem.key);
    assert.equal(p.status, 200);
    await p.json();
    assert.equal(cloud.requests.length - c0, 1, 'premium reached the best group');
  } finally {
    await gw.stop();
  }
  const rows = sqlite(file, "SELECT tier, status FROM requests WHERE endpoint = 'functions/invoke' ORDER BY id");
  assert.deepEqual(rows, [{ tier: 'free', status: 200 }, { tier: 'standard', status: 403 }, { tier: 'premium', status: 200 }]);
});

test('a tier\'s rate and budget defaults: keys made with the tier inherit rpm/tpm/budget; each customer of the tier gets its budget', async () => {
  const gw = await startGateway(config({
    extra: `auth: { master_key: env:MK, refresh_ms: 200 }
tiers:
  - { name: metered, price: { input: 1, output: 4 }, rpm: 2, tpm: 100000,
      budget: { limit_usd: 0.0001, period: daily, on_exhausted: reject } }
  - { name: open, price: { input: 1, output: 4 } }
customers:
  acme: metered
  zeta: metered`,
    backends: [{ name: 'cloud', url: cloud.url }],
    // 11 prompt + 5 completion tokens at $1/$2 per 1M: $0.000021 a request
    models: [{ name: 'priced', targets: [{ backend: 'cloud', model: 'ok', price: { input: 1, output: 2 } }] }],
  }), { env });
  try {
    // A key made with the tier carries its defaults (listed with it); one that sets its own keeps them.
    const made = await (await call(gw, 'POST', '/admin/keys', { tier: 'metered' })).json();
    const own = await (await call(gw, 'POST', '/admin/keys', { tier: 'metered', rpm: 50, budget_usd: 5 })).json();
    const plain = await (await call(gw, 'POST', '/admin/keys', { tier: 'open' })).json();
    const list = (await (await call(gw, 'GET', '/admin/keys')).json()).data;
    const row = (id) => list.find((k) => k.id === id);
    assert.equal(row(made.id).rpm, 2);
    assert.equal(row(made.id).tpm, 100000);
    assert.equal(row(made.id).budget_usd, 0.0001);
    assert.equal(row(made.id).budget_period, 'daily');
    assert.equal(row(own.id).rpm, 50);
    assert.equal(row(own.id).budget_usd, 5);
    assert.equal(row(plain.id).rpm ?? 0, 0);
    // ...and enforces them: the third request in a minute is refused.
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await chat(gw, made.key, 'priced')).status);
    assert.deepEqual(codes, [200, 200, 429]);

    // Customers of the tier (no budgets: entry names them) each get the tier's budget:
    // acme spends past $0.0001 in a few requests and is refused; zeta is not affected.
    const spend = [];
    for (let i = 0; i < 8; i++) spend.push((await chat(gw, own.key, 'priced', { 'x-stratus-customer': 'acme' })).status);
    assert.ok(spend.slice(0, 4).every((s) => s === 200), spend.join(','));
    const refused = await chat(gw, own.key, 'priced', { 'x-stratus-customer': 'acme' });
    assert.equal(refused.status, 429);
    const body = await refused.json();
    assert.equal(body.error.code, 'budget_exceeded');
    assert.match(body.error.message, /customer 'acme'/);
    assert.equal((await chat(gw, own.key, 'priced', { 'x-stratus-customer': 'zeta' })).status, 200);
  } finally { await gw.stop(); }
  assert.equal(gw.exitCode, 0, gw.stderr.slice(-3000));
});
