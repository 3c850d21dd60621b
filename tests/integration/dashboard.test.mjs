// The embedded dashboard (GET /dashboard) in a real headless Chromium (Debian's, driven by
// playwright-core; no browser download): its security headers, sign-in with the master key
// (kept in sessionStorage, never in a URL), the spend chart's numbers against the SQLite
// ledger read with the sqlite3 CLI, a key made and revoked in the page and refused after,
// and a backend's row turning red when its upstream is killed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor, SCALE } from './lib/gateway.mjs';

const MK = 'test-master-key-dashboard-0123456789';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// $1000 per 1M tokens both ways: the fake's 11 + 5 tokens cost $0.016 a request.
const PRICE = { input: 1000, output: 1000 };
let up, spare, gw, browser, page;

const chat = (key, model = 'chat') => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
});
const admin = (method, path, body) => fetch(`${gw.baseURL}${path}`, {
  method, headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' },
  body: body === undefined ? undefined : JSON.stringify(body),
});
const sql = (q) => {
  const out = execFileSync('sqlite3', ['-json', join(dirname(gw.file), 'stratus.db'), q], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
};
const T = (ms) => ms * SCALE;

before(async () => {
  up = await startFake();
  spare = await startFake();
  gw = await startGateway(config({
    extra: 'auth: { master_key: env:MK, refresh_ms: 200 }\nbudgets:\n  - { team: ml, limit_usd: 5, period: monthly }',
    backends: [{ name: 'up', url: up.url }, { name: 'spare', url: spare.url }],
    models: [
      { name: 'chat', targets: [{ backend: 'up', model: 'ok', price: PRICE }] },
      { name: 'other', targets: [{ backend: 'up', model: 'ok', price: PRICE }] },
      { name: 'second', cooldown: '{ failures: 1, duration_ms: 60000 }', targets: [{ backend: 'spare', model: 'ok', price: PRICE }] },
    ],
  }), { env: { MK } });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(T(10000));
});

after(async () => {
  await browser?.close();
  if (gw) {
    const code = await gw.stop();
    assert.equal(code, 0, `the gateway exits cleanly (ASan: no leak report)\n${gw.stderr.slice(-3000)}`);
  }
  await up?.close();
  await spare?.close().catch(() => {});
});

test('the page and its files: strict security headers, gzip, ETag revalidation, no data without a key', async () => {
  const r = await fetch(`${gw.baseURL}/dashboard`, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
  const csp = r.headers.get('content-security-policy');
  for (const part of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"])
    assert.ok(csp.includes(part), `CSP has ${part}: ${csp}`);
  assert.ok(!csp.includes('unsafe-inline') && !csp.includes('unsafe-eval'), csp);
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(r.headers.get('cache-control'), 'no-cache');
  const html = await r.text(); // fetch has undone the gzip
  assert.match(html, /<script src="\/dashboard\/dashboard.js" defer><\/script>/);
  assert.doesNotMatch(html, /<script>|<style|style="|on(click|load|submit)=/, 'nothing inline for the CSP to refuse');
  assert.doesNotMatch(html, /https?:\/\//, 'no CDN: every asset is the gateway\'s own');

  // Each asset: its type, a gzip copy that is the same bytes, an ETag that gives 304.
  let gzipped = 0;
  for (const [name, type] of [['dashboard.js', 'text/javascript; charset=utf-8'], ['dashboard.css', 'text/css; charset=utf-8']]) {
    const plain = await fetch(`${gw.baseURL}/dashboard/${name}`, { headers: { 'accept-encoding': 'identity' } });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get('content-type'), type);
    assert.equal(plain.headers.get('content-encoding'), null);
    assert.ok(plain.headers.get('content-security-policy'));
    const body = Buffer.from(await plain.arrayBuffer());
    const raw = await new Promise((resolve, reject) => {
      // node's fetch always decodes: read the gzip bytes over a bare socket-level request
      import('node:http').then(({ get }) => get(`${gw.baseURL}/dashboard/${name}`, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const parts = [];
        res.on('data', (d) => parts.push(d));
        res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(parts) }));
      }).on('error', reject));
    });
    assert.equal(raw.headers['content-encoding'], 'gzip');
    assert.equal(raw.headers.vary, 'Accept-Encoding');
    assert.deepEqual(gunzipSync(raw.body), body);
    gzipped += raw.body.length;
    const again = await fetch(`${gw.baseURL}/dashboard/${name}`, { headers: { 'if-none-match': plain.headers.get('etag') } });
    assert.equal(again.status, 304);
    assert.equal((await again.arrayBuffer()).byteLength, 0);
  }
  assert.ok(gzipped < 300 * 1024, `assets ${gzipped} bytes gzipped, target < 300 KB`);

  const nope = await fetch(`${gw.baseURL}/dashboard/secrets.json`);
  assert.equal(nope.status, 404);
  assert.equal(nope.headers.get('x-frame-options'), 'DENY');
  assert.equal((await nope.json()).error.code, 'not_found');
  // The data is not open: every endpoint the page calls wants the master key.
  for (const path of ['/admin/backends', '/admin/budgets', '/admin/cost/compare', '/admin/spend?group_by=route']) {
    assert.equal((await fetch(`${gw.baseURL}${path}`)).status, 401, path);
  }
});

test('sign in: a wrong key is refused on the form; the master key opens it and lives only in sessionStorage', async () => {
  await page.goto(`${gw.baseURL}/dashboard`);
  await page.locator('#login').waitFor({ state: 'visible' });
  const entries = await page.evaluate(() => history.length);
  await page.fill('#login-key', 'not-the-key');
  await page.click('#login-form button[type=submit]');
  await page.locator('#login-error').filter({ hasText: '401' }).waitFor();
  assert.equal(await page.locator('#app').isVisible(), false);

  // A virtual key is a key, but not the master key: refused too.
  const k = await (await admin('POST', '/admin/keys', { name: 'not-admin' })).json();
  await page.fill('#login-key', k.key);
  await page.click('#login-form button[type=submit]');
  await page.locator('#login-error').filter({ hasText: '403' }).waitFor();

  await page.fill('#login-key', MK);
  await page.click('#login-form button[type=submit]');
  await page.locator('body[data-ready="ok"]').waitFor();
  assert.equal(await page.locator('#login').isVisible(), false);
  assert.equal(page.url(), `${gw.baseURL}/dashboard`, 'no query, no fragment');
  const where = await page.evaluate(() => ({
    href: location.href, history: history.length, session: sessionStorage.getItem('stratus.key'),
    local: localStorage.length, cookies: document.cookie, field: document.getElementById('login-key').value,
  }));
  assert.ok(!where.href.includes(MK));
  assert.equal(where.history, entries, 'signing in added no history entry');
  assert.equal(where.session, MK);
  assert.equal(where.local, 0, 'nothing in localStorage');
  assert.equal(where.cookies, '');
  assert.equal(where.field, '', 'the form forgets the key once it is kept');
});

test('the spend chart shows what the ledger holds', async () => {
  for (let i = 0; i < 5; i++) assert.equal((await chat(MK)).status, 200);
  for (let i = 0; i < 2; i++) assert.equal((await chat(MK, 'other')).status, 200);
  await waitFor(() => sql('SELECT COUNT(*) AS n FROM requests WHERE status = 200')[0].n >= 7, { timeout: 5000, what: 'ledger rows' });
  const byModel = sql("SELECT model, SUM(cost_usd) AS cost, COUNT(*) AS n FROM requests WHERE cost_usd IS NOT NULL GROUP BY model ORDER BY model");
  const total = byModel.reduce((s, r) => s + r.cost, 0);
  assert.ok(Math.abs(total - 7 * 0.016) < 1e-9, `ledger total ${total}`);

  await page.reload(); // the session survives a reload
  await page.locator('body[data-ready="ok"]').waitFor();
  const bars = await page.$$eval('#spend-chart rect[data-cost]', (rs) => rs.map((r) => ({
    group: r.dataset.group, cost: Number(r.dataset.cost), requests: Number(r.dataset.requests), h: Number(r.getAttribute('height')),
  })));
  const chartTotal = bars.reduce((s, b) => s + b.cost, 0);
  assert.ok(Math.abs(chartTotal - total) < 1e-9, `chart ${chartTotal} vs ledger ${total}`);
  for (const row of byModel) {
    const mine = bars.filter((b) => b.group === row.model);
    assert.ok(Math.abs(mine.reduce((s, b) => s + b.cost, 0) - row.cost) < 1e-9, row.model);
    assert.equal(mine.reduce((s, b) => s + b.requests, 0), row.n);
    assert.ok(mine.every((b) => b.h > 0), 'every bar is drawn');
  }
  const table = await page.$$eval('#spend-table tbody tr', (rs) => rs.map((r) => [r.dataset.group, Number(r.dataset.cost)]));
  assert.deepEqual(table.map(([g]) => g).sort(), byModel.map((r) => r.model).sort());
  // The projection line is drawn from the same report.
  assert.equal(await page.locator('#spend-chart line.projection[data-usd]').count(), 1);
  assert.equal(await page.locator('#spend-chart line.budget[data-usd]').count(), 1, 'the team budget gives a budget line');

  // By team instead: one click re-asks the report.
  await page.selectOption('#spend-by', 'team');
  await page.locator('#spend-table tbody tr').first().waitFor();
  await waitFor(async () => (await page.$$eval('#spend-chart rect[data-cost]', (rs) => rs.every((r) => r.dataset.group === '')) ), { what: 'team groups' });
  await page.selectOption('#spend-by', 'model');

  // Routing: every request went to 'up', for the reason the ledger gives.
  const reasons = sql("SELECT route, COUNT(*) AS n FROM requests WHERE backend = 'up' GROUP BY route");
  assert.equal(reasons.length, 1);
  assert.equal(await page.locator('#routing-chart rect[data-backend="up"]').getAttribute('data-requests'), String(reasons[0].n));
  const why = await page.locator('#reasons-table tbody tr').first().innerText();
  assert.match(why, /priority; first available in configured order/);
  assert.match(why, new RegExp(`\\b${reasons[0].n}\\b`));

  // Budgets: the team's budget with what it has left and when it resets.
  const budget = await page.locator('#budgets-table tr[data-budget="team:ml"]').innerText();
  assert.match(budget, /\$5\.00/);
  assert.match(budget, /UTC/);
});

test('a key made in the page works; revoked in the page, it is refused', async () => {
  await page.fill('#key-name', 'dash-made');
  await page.fill('#key-team', 'ml');
  await page.click('#key-form button[type=submit]');
  const secret = await page.locator('#key-secret-value').innerText();
  assert.match(secret, /^sk-stratus-/);
  const id = (await page.locator('#key-secret code').first().innerText()).trim();
  assert.equal((await chat(secret)).status, 200);
  const row = page.locator(`#keys-table tr[data-key="${id}"]`);
  assert.equal(await row.getAttribute('data-status'), 'active');
  await row.locator('button.revoke').click();
  await row.locator('button.revoke').filter({ hasText: 'Confirm' }).click();
  await page.locator(`#keys-table tr[data-key="${id}"][data-status="revoked"]`).waitFor();
  const refused = await chat(secret);
  assert.equal(refused.status, 401);
  assert.equal((await refused.json()).error.code, 'invalid_api_key');
});

test('killing an upstream turns its row red (class and text) within seconds', async () => {
  const row = page.locator('#backends-table tr[data-backend="spare"]');
  assert.equal(await row.getAttribute('data-state'), 'up');
  assert.equal(await row.getAttribute('class'), '');
  assert.equal(await page.locator('#backends-table tr[data-backend="up"]').getAttribute('data-state'), 'up');
  await spare.close();
  // A request that finds it gone opens the breaker (failures: 1); the probe also notices.
  assert.ok([502, 503].includes((await chat(MK, 'second')).status));
  await page.locator('#backends-table tr[data-backend="spare"].down').waitFor({ timeout: T(10000) });
  const text = await row.innerText();
  assert.match(text, /DOWN/);
  assert.match(text, /open/);
  const colour = await row.locator('td').first().evaluate((td) => getComputedStyle(td).color);
  assert.equal(colour, 'rgb(179, 38, 30)');
  assert.equal(await page.locator('#backends-table tr[data-backend="up"]').getAttribute('data-state'), 'up', 'the other stays green');
  if (process.env.DASHBOARD_SCREENSHOTS) await page.screenshot({ path: join(process.env.DASHBOARD_SCREENSHOTS, 'dashboard-test.png'), fullPage: true });
});

test('a key that stops working sends the page back to sign-in; sign out forgets the key', async () => {
  await page.evaluate(() => sessionStorage.setItem('stratus.key', 'revoked-or-rotated'));
  await page.locator('#login').waitFor({ state: 'visible', timeout: T(10000) }); // the next refresh gets 401
  assert.equal(await page.evaluate(() => sessionStorage.getItem('stratus.key')), null);
  assert.match(await page.locator('#login-error').innerText(), /./);
  await page.fill('#login-key', MK);
  await page.click('#login-form button[type=submit]');
  await page.locator('body[data-ready="ok"]').waitFor();
  await page.click('#logout');
  await page.locator('#login').waitFor({ state: 'visible' });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
});
