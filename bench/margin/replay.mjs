// bench/margin — a replay of a mixed customer workload through stratus, three ways: tiers
// with `route: margin`, everything on the cloud's best model, everything on the local box.
// Reports what each way costs, earns and keeps (from the gateway's own margin report, which
// the ledger backs) and how many requests succeeded.
//
// The providers are fakes with real list prices (USD per 1M tokens, input/output):
//   big    gpt-4o prices 2.50 / 10.00        quality 3
//   mini   gpt-4o-mini prices 0.15 / 0.60    quality 2
//   local  an on-prem box priced at 0.05 / 0.05 (a TCO figure: ~$1,500 of hardware over
//          36 months plus 120 W at $0.15/kWh, serving ~40 tok/s busy half the time), with
//          the capacity of one such box: LOCAL_SLOTS requests at once, more get 503 (a group
//          with another target then fails over to it: every group allows one retry).
// Each fake answers in OpenAI's format with usage the way a tokenizer would count it
// (prompt ≈ characters / 4; completion = a share of max_tokens drawn per request) after a
// delay proportional to the tokens (cloud: 2 ms + 0.02 ms/token; local: 5 ms + 0.1 ms/token).
//
// Workload (fixed seed): REQUESTS requests from 300 customers — 60 % on tier free (charged
// nothing, must run locally), 30 % standard ($0.50 / $1.50 per 1M, keep 30 % margin, at most
// $0.01 expected per request), 10 % premium ($5 / $15 per 1M + $0.002 a request, keep 20 %);
// prompts of 200–16,000 characters, max_tokens 64–1,024, a fifth streamed; CONC clients.
//
// usage: node bench/margin/replay.mjs [--requests 10000] [--conc 32] [--local-slots 24]
//          [--modes margin,all-cloud,all-local] [--bin build/stratus]
import http from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    requests: { type: 'string', default: '10000' }, conc: { type: 'string', default: '32' },
    'local-slots': { type: 'string', default: '24' }, modes: { type: 'string', default: 'margin,all-cloud,all-local' },
    bin: { type: 'string', default: 'build/stratus' }, seed: { type: 'string', default: '19' },
  },
});
const REQUESTS = Number(a.requests), CONC = Number(a.conc), LOCAL_SLOTS = Number(a['local-slots']);

// ---- a deterministic workload ------------------------------------------------------------
function prng(seed) { // mulberry32
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r ^= r + Math.imul(r ^ (r >>> 7), 61 | r);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}
const CUSTOMERS = Array.from({ length: 300 }, (_, i) => ({
  id: `cust-${String(i).padStart(3, '0')}`, tier: i < 180 ? 'free' : i < 270 ? 'standard' : 'premium',
}));
function workload(seed) {
  const rnd = prng(seed);
  const words = 'the sea light keeper boat storm night harbour rope lamp wave rock gull'.split(' ');
  return Array.from({ length: REQUESTS }, () => {
    const c = CUSTOMERS[Math.floor(rnd() * CUSTOMERS.length)];
    const chars = Math.round(200 * Math.pow(80, rnd())); // 200 .. 16,000, log-uniform
    let text = '';
    while (text.length < chars) text += words[Math.floor(rnd() * words.length)] + ' ';
    const maxTokens = Math.round(64 * Math.pow(16, rnd())); // 64 .. 1,024
    return { customer: c.id, tier: c.tier, text, maxTokens, share: 0.2 + 0.8 * rnd(), stream: rnd() < 0.2 };
  });
}

// ---- fake providers --------------------------------------------------------------------------
function startProvider(name, { fixedMs, perTokenMs, slots = Infinity }) {
  let busy = 0;
  const stats = { name, requests: 0, refused: 0 };
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', () => {
      stats.requests++;
      if (busy >= slots) {
        stats.refused++;
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
        return res.end(JSON.stringify({ error: { message: `${name}: all ${slots} slots busy`, type: 'server_error' } }));
      }
      busy++;
      const body = JSON.parse(raw);
      const chars = body.messages.map((m) => String(m.content)).join('').length;
      const prompt = Math.ceil(chars / 4);
      const share = Number(req.headers['x-bench-share'] ?? 0.5);
      const completion = Math.max(1, Math.round((body.max_tokens ?? 256) * share));
      setTimeout(() => {
        busy--;
        const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
        const id = `chatcmpl-${stats.requests}`;
        if (body.stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          const chunk = (delta, finish, extra = {}) => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 0, model: body.model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
          res.write(chunk({ role: 'assistant', content: '' }, null));
          res.write(chunk({ content: `${completion} tokens` }, null));
          res.write(chunk({}, 'stop'));
          if (body.stream_options?.include_usage) res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 0, model: body.model, choices: [], usage })}\n\n`);
          return res.end('data: [DONE]\n\n');
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id, object: 'chat.completion', created: 0, model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: `${completion} tokens` }, finish_reason: 'stop' }], usage }));
      }, fixedMs + perTokenMs * (prompt / 10 + completion));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    stats.url = `http://127.0.0.1:${server.address().port}/v1`;
    stats.close = () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); });
    resolve(stats);
  }));
}

// ---- configs ---------------------------------------------------------------------------------
const PRICES = { big: [2.5, 10], mini: [0.15, 0.6], local: [0.05, 0.05] };
function configFor(mode, p) {
  const backend = (n) => `  - { name: ${n}, type: openai, base_url: "${p[n].url}", timeout_ms: 60000 }\n`;
  const target = (n, q) => `{ backend: ${n}, model: ${n}, quality: ${q}, price: { input: ${PRICES[n][0]}, output: ${PRICES[n][1]} } }`;
  const groups = {
    'margin': { chat: ['margin', [target('local', 1), target('mini', 2), target('big', 3)]], local: ['priority', [target('local', 1)]] },
    'all-cloud': { chat: ['priority', [target('big', 3)]], local: ['priority', [target('big', 3)]] },
    'all-local': { chat: ['priority', [target('local', 1)]], local: ['priority', [target('local', 1)]] },
  }[mode];
  let y = 'log: { requests: false }\nstore: { url: "sqlite://ledger.db" }\n';
  y += 'tiers:\n';
  y += '  - { name: free, price: { per_request: 0 }, route_to: local }\n';
  y += '  - { name: standard, price: { input: 0.50, output: 1.50 }, models: [chat], min_margin: 0.30, max_cost_usd: 0.01 }\n';
  y += '  - { name: premium, price: { input: 5.00, output: 15.00, per_request: 0.002 }, models: [chat], min_margin: 0.20 }\n';
  y += 'customers:\n' + CUSTOMERS.map((c) => `  ${c.id}: ${c.tier}\n`).join('');
  y += 'backends:\n' + ['big', 'mini', 'local'].map(backend).join('');
  y += 'models:\n';
  for (const [name, [route, targets]] of Object.entries(groups))
    y += `  - name: ${name}\n    route: ${route}\n    retry: { retries: 1 }\n    targets:\n${targets.map((t) => `      - ${t}\n`).join('')}`;
  return y;
}

async function startGateway(yaml) {
  const dir = mkdtempSync(join(tmpdir(), 'stratus-margin-'));
  const file = join(dir, 'stratus.yaml');
  writeFileSync(file, yaml);
  const child = spawn(a.bin, ['serve', '--config', file, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let buf = '', address = null;
  const ready = new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      buf += d;
      const m = /"event":"listening","address":"([^"]+)"/.exec(buf);
      if (m && !address) { address = m[1]; resolve(); }
    });
    child.on('exit', (code) => { if (!address) reject(new Error(`stratus exited ${code}:\n${buf.slice(-2000)}`)); });
  });
  await ready;
  return { url: `http://${address}`, dir, stop: () => new Promise((r) => { child.on('exit', r); child.kill('SIGTERM'); }) };
}

function send(gw, r) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ model: 'chat', max_tokens: r.maxTokens, stream: r.stream,
      ...(r.stream ? { stream_options: { include_usage: true } } : {}), messages: [{ role: 'user', content: r.text }] });
    const req = http.request(`${gw.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: {
      'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
      'x-stratus-customer': r.customer, 'x-bench-share': String(r.share) } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, ok: res.statusCode === 200 && (!r.stream || text.includes('[DONE]')),
        model: /"model":"(big|mini|local)"/.exec(text)?.[1] }));
    });
    req.on('error', () => resolve({ status: 0, ok: false }));
    req.end(body);
  });
}

async function runMode(mode, providers, work) {
  const gw = await startGateway(configFor(mode, providers));
  const before = Object.fromEntries(Object.values(providers).map((p) => [p.name, p.requests]));
  const refusedBefore = providers.local.refused;
  const t0 = performance.now();
  let next = 0, ok = 0;
  const byTierOk = {}, byTierModel = {};
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next < work.length) {
      const r = work[next++];
      const out = await send(gw, r);
      if (out.ok) {
        ok++;
        byTierOk[r.tier] = (byTierOk[r.tier] ?? 0) + 1;
        const k = `${r.tier}/${out.model}`;
        byTierModel[k] = (byTierModel[k] ?? 0) + 1;
      }
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  // Rows are written off the request path: wait until the ledger has every request.
  let report = null;
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${gw.url}/admin/spend?group_by=tier&from=1d`);
    report = await res.json();
    if (report.total?.requests >= work.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await gw.stop();
  rmSync(gw.dir, { recursive: true, force: true });
  const served = Object.fromEntries(Object.values(providers).map((p) => [p.name, p.requests - before[p.name]]));
  served.refused = providers.local.refused - refusedBefore;
  return { mode, secs, ok, byTierOk, byTierModel, report, served };
}

const usd = (x) => (x == null ? 'n/a' : `$${x.toFixed(2)}`);
const pct = (x) => `${(100 * x).toFixed(1)} %`;

const work = workload(Number(a.seed));
const tiers = Object.fromEntries(['free', 'standard', 'premium'].map((t) => [t, work.filter((r) => r.tier === t).length]));
const providers = {
  big: await startProvider('big', { fixedMs: 2, perTokenMs: 0.02 }),
  mini: await startProvider('mini', { fixedMs: 2, perTokenMs: 0.02 }),
  local: await startProvider('local', { fixedMs: 5, perTokenMs: 0.1, slots: LOCAL_SLOTS }),
};
const results = [];
for (const mode of a.modes.split(',')) {
  process.stderr.write(`bench/margin: ${mode} …\n`);
  results.push(await runMode(mode, providers, work));
}
for (const p of Object.values(providers)) await p.close();

console.log(`${REQUESTS} requests (free ${tiers.free}, standard ${tiers.standard}, premium ${tiers.premium}), ` +
  `${CONC} clients, local capacity ${LOCAL_SLOTS} at once, seed ${a.seed}.\n`);
console.log('| routing | succeeded | cost | revenue | margin | margin share | served by big / mini / local (503s) | wall |');
console.log('|---|---:|---:|---:|---:|---:|---|---:|');
for (const r of results) {
  const t = r.report.total ?? {};
  console.log(`| ${r.mode} | ${r.ok} (${pct(r.ok / REQUESTS)}) | ${usd(t.cost_usd)} | ${usd(t.revenue_usd)} | ${usd(t.margin_usd)} | ` +
    `${t.revenue_usd ? pct(t.margin_usd / t.revenue_usd) : 'n/a'} | ${r.served.big} / ${r.served.mini} / ` +
    `${r.served.local} (${r.served.refused}) | ${r.secs.toFixed(1)} s |`);
}
console.log('\nPer tier (succeeded; cost, revenue, margin from the ledger):\n');
console.log('| routing | tier | succeeded | answered by big / mini / local | cost | revenue | margin |');
console.log('|---|---|---:|---|---:|---:|---:|');
for (const r of results)
  for (const line of r.report.data ?? [])
    console.log(`| ${r.mode} | ${line.tier || '(none)'} | ${r.byTierOk[line.tier] ?? 0} / ${tiers[line.tier] ?? '?'} | ` +
      `${['big', 'mini', 'local'].map((m) => r.byTierModel[`${line.tier}/${m}`] ?? 0).join(' / ')} | ` +
      `${usd(line.cost_usd)} | ${usd(line.revenue_usd)} | ${usd(line.margin_usd)} |`);
