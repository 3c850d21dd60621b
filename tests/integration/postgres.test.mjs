// The ledger on a real PostgreSQL (Debian's server, started on a loopback port by the test):
// migrations at start (run once even when two instances start together), one row per
// request from two gateway instances sharing the database, and no row lost when the
// database goes away for a while: rows stay queued, a full queue is counted and logged, and
// queued rows are written once PostgreSQL is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor, writeConfig, BIN } from './lib/gateway.mjs';
import { importRows } from './lib/ledger-rows.mjs';
import { startPostgres } from './lib/services.mjs';

let up, pg;
before(async () => {
  up = await startFake();
  pg = await startPostgres();
});
after(async () => {
  await up?.close();
  await pg?.close();
});

const models = [{ name: 'chat', targets: [{ backend: 'up', model: 'ok', price: { input: 1, output: 2 } }] }];
const post = (gw, headers = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
});

test('two instances share one PostgreSQL ledger; migrations run once', async () => {
  const extra = `store: { url: "${pg.url}" }`;
  const [g1, g2] = await Promise.all([
    startGateway(config({ extra, backends: [{ name: 'up', url: up.url }], models })),
    startGateway(config({ extra, backends: [{ name: 'up', url: up.url }], models })),
  ]);
  for (let i = 0; i < 20; i++) assert.equal((await post(i % 2 ? g2 : g1, { 'x-stratus-customer': `c${i % 3}` })).status, 200);
  await Promise.all([g1.stop(), g2.stop()]);
  assert.deepEqual(pg.query('SELECT version FROM schema_migrations ORDER BY version'), [['1'], ['2'], ['3'], ['4'], ['5'], ['6'], ['7'], ['8'], ['9'], ['10']]);
  assert.deepEqual(pg.query('SELECT COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM requests'), [['20', '220', '100']]);
  assert.deepEqual(pg.query("SELECT customer, COUNT(*) FROM requests GROUP BY customer ORDER BY customer"),
    [['c0', '7'], ['c1', '7'], ['c2', '6']]);
  const cost = Number(pg.query('SELECT SUM(cost_usd) FROM requests')[0][0]);
  assert.ok(Math.abs(cost - 20 * (11 + 10) / 1e6) < 1e-12);
});

test('AWS credentials of keys live in PostgreSQL too: made on one instance, SigV4 verified on another', async () => {
  const MK = 'sk-master-postgres-aws-0123456789';
  const extra = `store: { url: "${pg.url}" }\nauth: { master_key: env:MK, refresh_ms: 200 }`;
  const cfg = config({ extra, backends: [{ name: 'up', url: up.url }], models });
  const [g1, g2] = await Promise.all([startGateway(cfg, { env: { MK } }), startGateway(cfg, { env: { MK } })]);
  try {
    const made = await (await fetch(`${g1.baseURL}/admin/keys`, { method: 'POST',
      headers: { authorization: `Bearer ${MK}` }, body: JSON.stringify({ aws: true, name: 'pg-aws' }) })).json();
    assert.match(made.aws_access_key_id, /^ASTR/);
    const stored = pg.query(`SELECT aws_secret_sealed <> '' FROM api_keys WHERE aws_key_id = '${made.aws_access_key_id}'`);
    assert.deepEqual(stored, [['t']]);
    assert.equal(pg.query('SELECT COUNT(*) FROM api_keys').flat().join(), '1');
    assert.ok(!JSON.stringify(pg.query('SELECT * FROM api_keys')).includes(made.aws_secret_access_key), 'secret not stored in clear');
    const { BedrockRuntimeClient, ConverseCommand } = await import('@aws-sdk/client-bedrock-runtime');
    const client = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: g2.baseURL, maxAttempts: 1,
      credentials: { accessKeyId: made.aws_access_key_id, secretAccessKey: made.aws_secret_access_key } });
    const out = await waitFor(async () => {
      try { return await client.send(new ConverseCommand({ modelId: 'chat', messages: [{ role: 'user', content: [{ text: 'hi' }] }] })); } catch { return null; }
    }, { timeout: 5000, what: 'the key to reach the second instance' });
    assert.equal(out.output.message.content[0].text, 'Hello from the fake');
  } finally {
    await Promise.all([g1.stop(), g2.stop()]);
  }
});

test('text with tabs and backslashes survives the COPY batch exactly', async () => {
  const gw = await startGateway(config({ extra: `store: { url: "${pg.url}" }`, backends: [{ name: 'up', url: up.url }], models }));
  assert.equal((await post(gw, { 'x-stratus-customer': 'tab\there \\N back\\slash' })).status, 200);
  await gw.stop();
  const got = pg.query("SELECT replace(customer, E'\\t', '<TAB>') FROM requests WHERE customer LIKE 'tab%'");
  assert.deepEqual(got, [['tab<TAB>here \\N back\\slash']]);
});

test('PostgreSQL down: rows wait, a full queue is counted and logged, then everything queued is written', async () => {
  const before = Number(pg.query('SELECT COUNT(*) FROM requests')[0][0]);
  const gw = await startGateway(config({ extra: `store: { url: "${pg.url}", queue_size: 5 }`,
    backends: [{ name: 'up', url: up.url }], models }));
  await pg.stop();
  for (let i = 0; i < 8; i++) assert.equal((await post(gw)).status, 200, 'requests are served while the ledger waits');
  await gw.waitForLog((l) => l.event === 'ledger_write_failed', 10000);
  const full = await gw.waitForLog((l) => l.event === 'ledger_queue_full', 10000);
  assert.match(full.message, /ledger queue full \(5 rows\)/);
  await pg.start();
  await waitFor(() => Number(pg.query('SELECT COUNT(*) FROM requests')[0][0]) >= before + 5, { timeout: 15000, what: 'queued rows written' });
  await gw.stop();
  assert.equal(gw.exitCode, 0);
  const after = Number(pg.query('SELECT COUNT(*) FROM requests')[0][0]);
  // 5 fit in the queue (one may have been in the failed batch: it is retried, not lost);
  // the rest were refused and logged.
  assert.ok(after - before >= 5 && after - before <= 6, `wrote ${after - before}`);
});

test('a store that cannot be reached at start stops the gateway with a clear message', async () => {
  await assert.rejects(startGateway(config({ extra: 'store: { url: "postgres://nobody@127.0.0.1:1/db" }',
    backends: [{ name: 'up', url: up.url }], models })), /ledger: postgres: cannot connect/);
});

test('spend reports (buckets, top-N with "other", CSV) are the same from PostgreSQL and SQLite', async () => {
  // The same known rows in both stores, in a window of their own (January 2001) so rows of
  // the other tests do not count. 'alpha' and 'Beta' tie on cost: PostgreSQL's collation and
  // SQLite's byte order would sort them differently; the report must not.
  const base = Date.UTC(2001, 0, 1), H = 3600000;
  const rows = [
    [base + H + 5, 'alpha', 0.5], [base + H + 9, 'Beta', 0.5], [base + 2 * H, 'alpha', 0.25],
    [base + 26 * H, 'gamma, "g"', 1], [base + 26 * H + 1, 'delta', 'NULL'], [base + 26 * H + 2, 'delta', 0.125],
    [base + 50 * H, 'Beta', 0.0625], [base + 50 * H + 1, '=eps', 0.03125],
  ];
  const imported = rows.map(([ts, c, usd]) => ({ ts_ms: ts, request_id: 'r', customer: c, backend: 'up', completion_tokens: 5,
    cost_usd: usd === 'NULL' ? null : usd }));
  const MK = 'sk-master-postgres-spend-0123456789';
  const pgCfg = config({ extra: `store: { url: "${pg.url}" }\nauth: { master_key: env:MK }`, backends: [{ name: 'up', url: up.url }], models });
  const gw = await startGateway(pgCfg, { env: { MK } }); // migrated
  const lite = writeConfig(config({ extra: 'auth: { master_key: env:MK }', backends: [{ name: 'up', url: up.url }], models }));
  const env = { ...process.env, MK };
  const spend = (file, args) => execFileSync(BIN, ['spend', '--config', file, '--by', 'customer', '--since', String(base),
    '--until', String(base + 7 * 24 * H), ...args], { encoding: 'utf8', env });
  try {
    importRows(gw.file, imported, { MK });
    importRows(lite, imported, { MK });
    for (const args of [['--bucket', 'day', '--top', '2', '--csv'], ['--bucket', 'hour', '--csv'], ['--top', '3', '--csv'],
      ['--bucket', 'day', '--top', '1', '--json']]) {
      const fromPg = spend(gw.file, args), fromLite = spend(lite, args);
      if (args.includes('--json')) {
        const [p, l] = [JSON.parse(fromPg), JSON.parse(fromLite)];
        assert.deepEqual(p.data, l.data, args.join(' '));
        assert.deepEqual(p.groups, l.groups);
      } else {
        assert.equal(fromPg, fromLite, args.join(' '));
      }
    }
    const byDay = spend(gw.file, ['--bucket', 'day', '--top', '2', '--csv']);
    assert.equal(byDay, [
      'bucket,customer,requests,prompt_tokens,completion_tokens,cost_usd,unknown_cost_requests,estimated_requests',
      // top 2 over the week: gamma ($1) and alpha ($0.75); Beta, delta and =eps are "other"
      '2001-01-01T00:00:00Z,alpha,2,20,10,0.75,0,0',
      '2001-01-01T00:00:00Z,other,1,10,5,0.5,0,0',
      '2001-01-02T00:00:00Z,"gamma, ""g""",1,10,5,1,0,0',
      '2001-01-02T00:00:00Z,other,2,20,10,0.125,1,0',
      '2001-01-03T00:00:00Z,other,2,20,10,0.09375,0,0',
      ''].join('\r\n'));
    // The gateway's own answer on PostgreSQL is the CLI's, byte for byte.
    const res = await fetch(`${gw.baseURL}/admin/spend?group_by=customer&from=${base}&to=${base + 7 * 24 * H}&bucket=day&top=2`,
      { headers: { authorization: `Bearer ${MK}`, accept: 'text/csv' } });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), byDay);
    // Ties on cost (alpha and Beta in hour 1) come in byte order from both stores.
    assert.match(spend(gw.file, ['--bucket', 'hour', '--csv']), /\r\n2001-01-01T01:00:00Z,Beta,1,10,5,0\.5,0,0\r\n2001-01-01T01:00:00Z,alpha,1,/);
    assert.match(spend(gw.file, ['--csv']), /\r\n'=eps,1,10,5,0\.03125,0,0\r\n/);
    assert.match(spend(gw.file, ['--csv']), /\r\n"gamma, ""g""",1,10,5,1,0,0\r\n/);
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

// Each dimension's rollup lines vs the raw rows grouped by that column, in PostgreSQL.
function pgRollupsMatchRows(span) {
  let total = 0;
  for (const [dim, col] of [['model', 'model'], ['key', 'key_id'], ['team', 'team'], ['customer', 'customer'], ['backend', 'backend'],
    ['target', 'target_model']]) {
    const a = pg.query(`SELECT bucket_ms, value, requests, errors, prompt_tokens, completion_tokens, ROUND(cost_usd::numeric, 9), ` +
      `unknown_cost FROM rollups WHERE span_ms = ${span} AND dim = '${dim}' ORDER BY 1, 2`);
    const b = pg.query(`SELECT (ts_ms / ${span}) * ${span} AS b, ${col}, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), ` +
      `SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(completion_tokens, 0)), ROUND(SUM(COALESCE(cost_usd, 0))::numeric, 9), ` +
      `SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) FROM requests GROUP BY 1, 2 ORDER BY 1, 2`);
    assert.ok(b.length > 0);
    assert.deepEqual(a, b, `${dim} span ${span}`);
    total = b.reduce((n, r) => n + Number(r[2]), 0);
  }
  return total;
}

test('rollups in PostgreSQL: two instances upserting the same lines under load equal the rows; retention keeps them', async () => {
  const MK = 'sk-master-postgres-rollups-0123456789';
  const extra = `store: { url: "${pg.url}", retention: { rows_days: 30, rollups_days: 800, every_s: 1 } }\nauth: { master_key: env:MK }`;
  const cfg = config({ extra, backends: [{ name: 'up', url: up.url }], models });
  // 300 rows 40 days old: retention deletes them, their rollups stay.
  const file = writeConfig(cfg);
  const old = Date.now() - 40 * 86400000;
  importRows(file, Array.from({ length: 300 }, (_, i) => ({ ts_ms: old + i, customer: 'aged', backend: 'up', cost_usd: 0.01 })), { MK });
  const [g1, g2] = await Promise.all([startGateway(null, { env: { MK }, file }), startGateway(cfg, { env: { MK } })]);
  let failed = 0;
  await Promise.all(Array.from({ length: 32 }, async (_, w) => {
    for (let i = 0; i < 12; i++) {
      const gw = (w + i) % 2 ? g1 : g2;
      const r = await fetch(`${gw.baseURL}/v1/chat/completions`, {
        method: 'POST', headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json', 'x-stratus-customer': `p${i % 2}` },
        body: JSON.stringify({ model: i % 5 ? 'chat' : 'nope', stream: i % 3 === 0, messages: [{ role: 'user', content: 'x' }] }),
      });
      await r.arrayBuffer();
      if (r.status !== 200 && r.status !== 404) failed++;
    }
  }));
  assert.equal(failed, 0);
  await waitFor(() => g1.logs.find((l) => l.event === 'ledger_retention') || g2.logs.find((l) => l.event === 'ledger_retention'),
    { timeout: 15000, what: 'a retention run' });
  await Promise.all([g1.stop(), g2.stop()]);
  assert.equal(g1.exitCode, 0);
  assert.equal(g2.exitCode, 0);
  assert.ok(!g1.logs.concat(g2.logs).some((l) => /deadlock|ledger_write_failed/.test(JSON.stringify(l))), 'no deadlock between the two writers');
  assert.deepEqual(pg.query("SELECT COUNT(*) FROM requests WHERE customer = 'aged'"), [['0']]);
  assert.deepEqual(pg.query("SELECT span_ms, SUM(requests) FROM rollups WHERE dim = 'customer' AND value = 'aged' GROUP BY span_ms ORDER BY span_ms"),
    [['3600000', '300'], ['86400000', '300']]);
  assert.ok(Number(pg.query('SELECT rows_before_ms FROM ledger_retention')[0][0]) > old);
  // Every row still there matches its rollups once the deleted ones are set aside.
  pg.query(`DELETE FROM rollups WHERE bucket_ms < ${Date.now() - 35 * 86400000}`);
  const n = pgRollupsMatchRows(3600000);
  assert.equal(pgRollupsMatchRows(86400000), n);
  assert.deepEqual(pg.query("SELECT COUNT(*) FROM requests WHERE customer IN ('p0', 'p1')"), [['384']]);
});

test('upgrade on PostgreSQL: migration 9 aggregates the existing rows in the database', async () => {
  const MK = 'sk-master-postgres-upgrade-0123456789';
  const file = writeConfig(config({ extra: `store: { url: "${pg.url}" }\nauth: { master_key: env:MK }`, backends: [{ name: 'up', url: up.url }], models }));
  const gw = await startGateway(null, { env: { MK }, file });
  for (let i = 0; i < 30; i++) {
    const r = await fetch(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json', 'x-stratus-customer': `u${i % 4}` },
      body: JSON.stringify({ model: i % 6 ? 'chat' : 'nope', stream: i % 2 === 0, messages: [{ role: 'user', content: 'x' }] }),
    });
    await r.arrayBuffer();
  }
  await gw.stop();
  // As a ledger written before rollups existed.
  pg.query('DROP TABLE rollups; DROP TABLE ledger_retention; DELETE FROM schema_migrations WHERE version = 9');
  execFileSync(BIN, ['spend', '--config', file], { env: { ...process.env, MK } }); // opens the store: migrates
  assert.deepEqual(pg.query('SELECT MAX(version) FROM schema_migrations'), [['10']]); // 10 was never undone
  const n = pgRollupsMatchRows(3600000);
  assert.equal(pgRollupsMatchRows(86400000), n);
  assert.deepEqual(pg.query("SELECT SUM(requests) FROM rollups WHERE dim = 'route' AND span_ms = 86400000"), pg.query('SELECT COUNT(*) FROM requests'));
  assert.ok(pg.query("SELECT DISTINCT value FROM rollups WHERE dim = 'route'").flat().includes('priority; first available in configured order'));
});

test('customer tiers on PostgreSQL: a key tier and a customer tier set on one instance hold on the other; revenue and margin rows; the margin report equals them', async () => {
  const MK = 'sk-master-postgres-tiers-0123456789';
  const extra = `store: { url: "${pg.url}" }\nauth: { master_key: env:MK, refresh_ms: 200 }
tiers:
  - { name: pgstd, price: { input: 3, output: 6 } }
  - { name: pgprem, price: { input: 10, output: 20, per_request: 0.001 } }`;
  const cfg = config({ extra, backends: [{ name: 'up', url: up.url }], models });
  const [g1, g2] = await Promise.all([startGateway(cfg, { env: { MK } }), startGateway(cfg, { env: { MK } })]);
  const admin = (gw, path, body) => fetch(`${gw.baseURL}${path}`, { method: body ? 'POST' : 'GET', headers: { authorization: `Bearer ${MK}` }, body: body && JSON.stringify(body) });
  let file;
  try {
    file = g1.file;
    const key = await (await admin(g1, '/admin/keys', { tier: 'pgprem' })).json();
    assert.equal((await admin(g2, '/admin/customers', { customer: 'pg-cust', tier: 'pgstd' })).status, 200);
    assert.deepEqual(pg.query("SELECT customer, tier FROM customers WHERE customer = 'pg-cust'"), [['pg-cust', 'pgstd']]);
    // g1 learns the customer's tier at its next refresh; g2 the key's.
    await waitFor(async () => (await (await admin(g1, '/admin/customers')).json()).data.length === 1, { what: 'g1 sees the customer' });
    await waitFor(async () => (await post(g2, { authorization: `Bearer ${key.key}` })).status === 200, { what: 'g2 knows the key' });
    for (const gw of [g1, g2]) {
      assert.equal((await post(gw, { authorization: `Bearer ${key.key}` })).status, 200);
      assert.equal((await post(gw, { authorization: `Bearer ${MK}`, 'x-stratus-customer': 'pg-cust' })).status, 200);
    }
  } finally {
    await Promise.all([g1.stop(), g2.stop()]);
  }
  const rows = pg.query("SELECT tier, prompt_tokens, completion_tokens, cost_usd, revenue_usd, margin_usd FROM requests WHERE tier IN ('pgstd', 'pgprem')");
  assert.equal(rows.filter((r) => r[0] === 'pgprem').length, 3); // the waitFor request counts
  assert.equal(rows.filter((r) => r[0] === 'pgstd').length, 2);
  const price = { pgstd: [0, 3, 6], pgprem: [0.001, 10, 20] };
  for (const [tier, pt, ct, cost, revenue, margin] of rows) {
    const [per, i, o] = price[tier];
    assert.ok(Math.abs(Number(revenue) - (per + (Number(pt) * i + Number(ct) * o) / 1e6)) < 1e-12, `revenue ${tier}`);
    assert.ok(Math.abs(Number(margin) - (Number(revenue) - Number(cost))) < 1e-12, `margin ${tier}`);
  }
  const report = JSON.parse(execFileSync(BIN, ['spend', '--by', 'tier', '--json', '--config', file], { encoding: 'utf8', env: { ...process.env, MK } }));
  for (const tier of ['pgstd', 'pgprem']) {
    const mine = rows.filter((r) => r[0] === tier);
    const line = report.data.find((l) => l.tier === tier);
    assert.equal(line.requests, mine.length);
    assert.ok(Math.abs(line.revenue_usd - mine.reduce((a, r) => a + Number(r[4]), 0)) < 1e-12);
    assert.ok(Math.abs(line.margin_usd - mine.reduce((a, r) => a + Number(r[5]), 0)) < 1e-12);
  }
});
