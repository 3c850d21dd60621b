// The measurement behind bench/dashboard/run (see there). Prints one JSON line per figure
// and a summary; SCREENSHOTS=DIR also saves the signed-in page (1280x900 PNG).
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { readFileSync, readdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startFake } from '../../tests/fakes/openai.mjs';
import { startGateway, config } from '../../tests/integration/lib/gateway.mjs';

const LOADS = Number(process.env.LOADS || 20);
const SHOTS = process.env.SCREENSHOTS;
const MK = 'bench-master-key-0123456789abcdef';
const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
const local = existsSync(MODEL);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const up = await startFake();
const eu = await startFake();
const backends = [{ name: 'openai', url: up.url }, { name: 'azure-eu', url: eu.url }];
if (local) {
  backends.push({ name: 'gpu-box', type: 'local', fields: {
    model_path: MODEL, parallel: 2, cost: '{ watts: 350, kwh_price: 0.30, hardware_price: 2500, lifetime_months: 36 }',
  } });
}
const models = [
  { name: 'gpt-4o-mini', route: 'latency', targets: [
    { backend: 'openai', model: 'ok', price: { input: 0.15, output: 0.6 } },
    { backend: 'azure-eu', model: 'ok', price: { input: 0.165, output: 0.66 } }] },
  { name: 'gpt-4o', cooldown: '{ failures: 1, duration_ms: 600000 }', targets: [
    { backend: 'openai', model: 'ok', price: { input: 2.5, output: 10 } },
    { backend: 'azure-eu', model: 'ok', price: { input: 2.75, output: 11 } }] },
  { name: 'claude-sonnet', targets: [{ backend: 'azure-eu', model: 'ok', price: { input: 3, output: 15 } }] },
];
if (local) models.push({ name: 'local-llama', targets: [{ backend: 'gpu-box', model: 'tiny' }] });
const yaml = config({
  extra: `auth: { master_key: env:MK, refresh_ms: 1000 }\nbudgets:\n` +
    '  - { team: search, limit_usd: 40, period: monthly }\n  - { team: support, limit_usd: 12, period: monthly }\n' +
    '  - { customer: acme, limit_usd: 3, period: daily }',
  backends, models,
});

// A week of history, hour by hour, written into the ledger before the gateway reads it.
let gw = await startGateway(yaml, { env: { MK } });
await gw.stop();
const db = join(dirname(gw.file), 'stratus.db');
const rows = [];
const now = Date.now();
const teams = ['search', 'support', 'growth'];
const customers = ['acme', 'globex', 'initech', 'umbrella'];
const targets = [
  ['gpt-4o-mini', 'openai', 0.15, 0.6, 'latency; lowest ttfb openai (210.0 ms)'],
  ['gpt-4o-mini', 'azure-eu', 0.165, 0.66, 'latency; lowest ttfb azure-eu (190.0 ms)'],
  ['gpt-4o', 'openai', 2.5, 10, 'priority; first available in configured order'],
  ['gpt-4o', 'azure-eu', 2.75, 11, 'priority; first available in configured order; after 1 failed attempt'],
  ['claude-sonnet', 'azure-eu', 3, 15, 'priority; first available in configured order'],
];
let seed = 7;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
for (let h = 7 * 24; h >= 1; h--) {
  const busy = 0.4 + 0.6 * Math.max(0, Math.sin(((now / 3600e3 - h) % 24) / 24 * Math.PI * 2 - 1.2));
  for (let i = 0; i < Math.round(6 * busy) + 1; i++) {
    const [model, backend, pin, pout, route] = targets[Math.floor(rand() * targets.length)];
    const p = 800 + Math.floor(rand() * 4000), c = 200 + Math.floor(rand() * 800);
    const cost = (p * pin + c * pout) / 1e6 * 20; // each row stands for 20 requests' worth
    const ts = now - h * 3600e3 + Math.floor(rand() * 3600e3);
    rows.push(`(${ts}, 'seed-${h}-${i}', '', '${teams[Math.floor(rand() * 3)]}', '${customers[Math.floor(rand() * 4)]}', ` +
      `'${model}', '${backend}', 'ok', 'chat/completions', 200, 0, ${p}, ${c}, 0, 0, ${cost}, 900, 300, '${route}', '')`);
  }
}
execFileSync('sqlite3', [db], { input: `INSERT INTO requests (ts_ms, request_id, key_id, team, customer, model, backend, target_model, endpoint, status, stream, prompt_tokens, completion_tokens, cached_tokens, estimated, cost_usd, latency_ms, ttft_ms, route, guard) VALUES ${rows.join(',\n')};` });
gw = await startGateway(yaml, { env: { MK }, file: gw.file });

// Wait for every backend (the local engine loads its model) before traffic.
for (let i = 0; i < 300; i++) {
  const b = await fetch(`${gw.baseURL}/admin/backends`, { headers: { authorization: `Bearer ${MK}` } }).then((r) => r.json());
  if (b.data.every((x) => x.ready)) break;
  await sleep(100);
}
// Live traffic: keys of three teams, customers, every model group.
const admin = (method, path, body) => fetch(`${gw.baseURL}${path}`, {
  method, headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' }, body: body && JSON.stringify(body),
}).then((r) => r.json());
const keys = [];
for (const team of teams) keys.push((await admin('POST', '/admin/keys', { name: `${team}-app`, team, budget_usd: 25, budget_period: 'monthly' })).key);
await admin('POST', '/admin/keys', { name: 'ci-runner', team: 'growth' });
const send = (key, model, customer) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-stratus-customer': customer },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 8 }),
}).then((r) => r.arrayBuffer());
for (let i = 0; i < 40; i++) await send(keys[i % 3], models[i % models.length].name, customers[i % 4]);

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const times = [];
for (let i = 0; i < LOADS + 2; i++) { // two warm-up loads (Chromium's own first start)
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript((k) => sessionStorage.setItem('stratus.key', k), MK);
  const page = await context.newPage();
  await page.goto(`${gw.baseURL}/dashboard`);
  await page.locator('body[data-ready="ok"]').waitFor({ timeout: 30000 });
  const t = await page.evaluate(() => ({
    ready: Number(document.body.dataset.readyMs),
    dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
  }));
  if (i >= 2) times.push(t);
  await context.close();
}
const stat = (xs) => {
  const s = xs.slice().sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], p95: s[Math.min(s.length - 1, Math.ceil(s.length * 0.95) - 1)], min: s[0], max: s[s.length - 1] };
};
const ready = stat(times.map((t) => t.ready)), dcl = stat(times.map((t) => t.dcl));
const assets = readdirSync('web/dashboard').map((f) => readFileSync(join('web/dashboard', f)));
const raw = assets.reduce((s, b) => s + b.length, 0), gz = assets.reduce((s, b) => s + gzipSync(b, { level: 9 }).length, 0);
console.log(JSON.stringify({ figure: 'dashboard_first_load_ms', loads: LOADS, ...ready }));
console.log(JSON.stringify({ figure: 'dashboard_dom_content_loaded_ms', ...dcl }));
console.log(JSON.stringify({ figure: 'dashboard_assets_bytes', raw, gzip: gz, binary: statSync('build/stratus').size }));
console.log(`first load (navigation start → every chart drawn): median ${ready.median.toFixed(1)} ms, p95 ${ready.p95.toFixed(1)} ms over ${LOADS} fresh contexts; assets ${raw} B, ${gz} B gzipped`);

if (SHOTS) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript((k) => sessionStorage.setItem('stratus.key', k), MK);
  const page = await context.newPage();
  await page.goto(`${gw.baseURL}/dashboard`);
  await page.locator('body[data-ready="ok"]').waitFor();
  await page.selectOption('#spend-range', '7d/day');
  await sleep(500);
  await page.screenshot({ path: join(SHOTS, 'dashboard-spend.png') });
  // One upstream killed: its row turns red within a probe or a failed request.
  await eu.close();
  await send(keys[0], 'claude-sonnet', 'acme');
  await page.locator('#backends-table tr[data-backend="azure-eu"].down').waitFor({ timeout: 15000 });
  await page.evaluate(() => { document.getElementById('backends').scrollIntoView({ block: 'start' }); window.scrollBy(0, -14); });
  await page.screenshot({ path: join(SHOTS, 'dashboard-backends.png') });
  await context.close();
  console.log(`screenshots: ${SHOTS}/dashboard-spend.png, ${SHOTS}/dashboard-backends.png`);
}
await browser.close();
await gw.stop();
await up.close();
await eu.close().catch(() => {});
