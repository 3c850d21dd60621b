// stratus dashboard. Plain script, no framework, no chart library: the charts are SVG drawn
// here. Every figure comes from the gateway's JSON admin API, called with the master key the
// operator typed in; the key lives in sessionStorage (this tab only, gone when it closes)
// and travels only in an Authorization header, never in a URL.
'use strict';

const KEY = 'stratus.key';
const LIVE_MS = 3000; // backends and budgets
const SLOW_EVERY = 5; // spend, routing and keys: every 5th live tick (15 s)
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);
let timer = null;
let ticks = 0;

// ---- small helpers -------------------------------------------------------------------------

class AuthError extends Error {}

// Calls the admin API. A 401 anywhere means the key is no longer good: back to the login.
async function api(path, options = {}) {
  const key = sessionStorage.getItem(KEY);
  if (!key) throw new AuthError('not signed in');
  const res = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${key}`, ...(options.headers || {}) },
    cache: 'no-store',
    referrerPolicy: 'no-referrer',
  });
  const body = await res.json().catch(() => null);
  if (res.status === 401) {
    signOut(body?.error?.message || 'the key was refused');
    throw new AuthError('401');
  }
  if (!res.ok) throw new Error(body?.error?.message || `${res.status} from ${path}`);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of children) if (c) e.append(c);
  return e;
}

function titled(node, text) {
  node.append(svg('title', {}, document.createTextNode(text)));
  return node;
}

function usd(v) {
  if (v === null || v === undefined) return '—';
  const a = Math.abs(v);
  const digits = a >= 100 ? 2 : a >= 1 ? 2 : a >= 0.01 ? 4 : a === 0 ? 2 : 6;
  return `$${v.toFixed(digits)}`;
}

function count(v) {
  if (v >= 1e9) return `${(v / 1e9).toFixed(1)}B`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return String(Math.round(v));
}

function ms(v) {
  return v === null || v === undefined ? '—' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`;
}

function when(iso) {
  return iso ? iso.replace('T', ' ').replace(/:\d\dZ$/, ' UTC') : '—';
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function setError(id, text) {
  $(id).textContent = text || '';
}

// A colour class per series, in rank order; "other" is always grey.
function colour(group, index) {
  return group === 'other' ? 'cother' : `c${index % 8}`;
}

// ---- spend: stacked bars per bucket, the projection and budget lines -----------------------

let spendBudgetPerDay = 0; // from the budgets call: monthly limits spread over the month

async function loadSpend() {
  const by = $('spend-by').value;
  const [from, bucket] = $('spend-range').value.split('/');
  const q = new URLSearchParams({ group_by: by, from, bucket, top: '7' });
  const r = await api(`/admin/spend?${q}`);
  drawSpend(r, from, bucket);
}

function drawSpend(r, from, bucket) {
  const p = r.projection;
  const kpis = [
    ['month to date', usd(p.month_to_date_usd)],
    ['projected month-end', usd(p.projected_month_usd)],
    ['trailing daily', usd(p.trailing_daily_usd)],
    [`in range (${r.total.requests} requests)`, usd(r.total.cost_usd)],
  ];
  $('spend-kpis').replaceChildren(
    ...kpis.map(([label, value]) => el('div', { class: 'kpi' }, el('b', { text: value }), el('span', { text: label }))),
    r.anomaly.flagged
      ? el('div', { class: 'kpi alert' }, el('b', { text: usd(r.anomaly.last_hour_usd) }),
        el('span', { text: `last hour: over ${r.anomaly.factor}× the usual (anomaly)` }))
      : '',
  );
  const groups = (r.groups || []).map((g) => g.group);
  const index = new Map(groups.map((g, i) => [g, i]));

  // Every bucket of the range, empty ones included, so time reads evenly.
  const step = bucket === 'hour' ? 3600e3 : 86400e3;
  const to = Date.now();
  const span = { '24h': 24 * 3600e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 }[from];
  const first = Math.floor((to - span) / step) * step;
  const buckets = [];
  for (let t = first; t <= to; t += step) buckets.push(t);
  const stacks = new Map(buckets.map((t) => [t, []]));
  for (const line of r.data) {
    const t = Date.parse(line.bucket);
    if (!stacks.has(t)) stacks.set(t, []);
    stacks.get(t).push(line);
  }
  const perBucket = bucket === 'hour' ? 1 / 24 : 1;
  const projection = p.trailing_daily_usd * perBucket;
  const budget = spendBudgetPerDay * perBucket;
  let max = Math.max(projection, budget, 1e-9);
  for (const lines of stacks.values()) max = Math.max(max, lines.reduce((s, l) => s + l.cost_usd, 0));
  max *= 1.1;

  const W = 720, H = 260, L = 64, R = 10, T = 10, B = 28;
  const slot = (W - L - R) / buckets.length;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'spend over time' });
  const axis = svg('g', { class: 'axis' });
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    axis.append(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, document.createTextNode(usd(v))));
  }
  const every = Math.ceil(buckets.length / 8);
  buckets.forEach((t, i) => {
    if (i % every) return;
    const d = new Date(t).toISOString();
    const label = bucket === 'hour' ? `${d.slice(11, 13)}:00` : d.slice(5, 10);
    axis.append(svg('text', { x: L + slot * (i + 0.5), y: H - 10, 'text-anchor': 'middle' }, document.createTextNode(label)));
  });
  chart.append(axis);
  const bars = svg('g', { class: 'bars' });
  buckets.forEach((t, i) => {
    let base = 0;
    for (const line of stacks.get(t) || []) {
      const h = (H - T - B) * (line.cost_usd / max);
      const rect = svg('rect', {
        x: (L + slot * i + slot * 0.12).toFixed(2), width: (slot * 0.76).toFixed(2),
        y: (y(base) - h).toFixed(2), height: Math.max(h, 0).toFixed(2),
        class: colour(line.group, index.get(line.group) ?? 0),
        'data-group': line.group, 'data-bucket': line.bucket, 'data-cost': String(line.cost_usd),
        'data-requests': String(line.requests),
      });
      bars.append(titled(rect, `${line.group} · ${when(line.bucket)}: ${usd(line.cost_usd)} (${line.requests} requests)`));
      base += line.cost_usd;
    }
  });
  chart.append(bars);
  if (projection > 0) {
    chart.append(titled(svg('line', { class: 'projection', x1: L, x2: W - R, y1: y(projection), y2: y(projection), 'data-usd': String(projection) }),
      `projection: the trailing 7-day average, ${usd(projection)} per ${bucket}`));
  }
  if (budget > 0) {
    chart.append(titled(svg('line', { class: 'budget', x1: L, x2: W - R, y1: y(budget), y2: y(budget), 'data-usd': String(budget) }),
      `budget: monthly budgets spread evenly, ${usd(budget)} per ${bucket}`));
  }
  const legend = svg('g', { class: 'legend' });
  let lx = L;
  const items = [];
  if (projection > 0) items.push(['projection', 'projection (7-day avg)']);
  if (budget > 0) items.push(['budget', 'budget pace']);
  for (const [cls, text] of items) {
    legend.append(svg('line', { class: cls, x1: lx, x2: lx + 18, y1: T + 4, y2: T + 4 }),
      svg('text', { x: lx + 22, y: T + 8 }, document.createTextNode(text)));
    lx += 30 + text.length * 6;
  }
  chart.append(legend);
  if (!r.data.length) {
    chart.append(svg('text', { class: 'empty', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, document.createTextNode('no spend in this range yet')));
  }
  $('spend-chart').replaceChildren(chart);

  fill($('spend-table').tBodies[0], (r.groups || []).map((g, i) => el('tr', { 'data-group': g.group, 'data-cost': String(g.cost_usd) },
    el('td', {}, el('span', { class: `swatch ${colour(g.group, i)}` }), g.group || '(none)'),
    el('td', { class: 'num', text: String(g.requests) }),
    el('td', { class: 'num', text: `${count(g.prompt_tokens)} / ${count(g.completion_tokens)}` }),
    el('td', { class: 'num', text: usd(g.cost_usd) + (g.unknown_cost_requests ? ` (+${g.unknown_cost_requests} unpriced)` : '') }))));
  $('spend-table').dataset.total = String(r.total.cost_usd);
}

// ---- routing share per backend, and why --------------------------------------------------

async function loadRouting() {
  const [backends, reasons] = await Promise.all([
    api('/admin/spend?group_by=backend&from=24h'),
    api('/admin/spend?group_by=route&from=24h&top=8'),
  ]);
  const lines = backends.data.filter((l) => l.group !== '');
  const total = lines.reduce((s, l) => s + l.requests, 0);
  const W = 420, rowH = 24, L = 110, R = 60;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${Math.max(lines.length, 1) * rowH + 8}`, role: 'img', 'aria-label': 'requests per backend, last 24 hours' });
  lines.forEach((l, i) => {
    const share = total ? l.requests / total : 0;
    const yv = 4 + i * rowH;
    chart.append(svg('text', { class: 'label', x: L - 6, y: yv + 15, 'text-anchor': 'end' }, document.createTextNode(l.group)),
      titled(svg('rect', { x: L, y: yv + 3, height: rowH - 8, width: ((W - L - R) * share).toFixed(2), class: colour(l.group, i), 'data-backend': l.group, 'data-requests': String(l.requests) }),
        `${l.group}: ${l.requests} requests, ${usd(l.cost_usd)}`),
      svg('text', { class: 'label', x: L + (W - L - R) * share + 6, y: yv + 15 }, document.createTextNode(`${(share * 100).toFixed(1)}%`)));
  });
  if (!lines.length) chart.append(svg('text', { class: 'empty', x: W / 2, y: 18, 'text-anchor': 'middle' }, document.createTextNode('no routed requests in 24 hours')));
  $('routing-chart').replaceChildren(chart);
  const all = reasons.data.reduce((s, l) => s + l.requests, 0);
  fill($('reasons-table').tBodies[0], reasons.data.map((l) => el('tr', {},
    el('td', { text: l.group || '(refused before routing)' }),
    el('td', { class: 'num', text: String(l.requests) }),
    el('td', { class: 'num', text: all ? `${((l.requests / all) * 100).toFixed(1)}%` : '—' }))));
}

// ---- live backends -------------------------------------------------------------------------

async function loadBackends() {
  const r = await api('/admin/backends');
  fill($('backends-table').tBodies[0], r.data.map((b) => {
    const open = b.breaker === 'open';
    const down = !b.ready || open;
    const health = !b.ready ? `down${b.reason ? `: ${b.reason}` : ''}` : open ? 'up, breaker open' : 'up';
    const e = b.engine;
    return el('tr', { class: down ? 'down' : b.breaker === 'half-open' ? 'warn' : '', 'data-backend': b.name, 'data-state': down ? 'down' : 'up' },
      el('td', { text: `${b.name} (${b.type})` }),
      el('td', {}, el('span', { class: `badge ${down ? 'down' : 'up'}`, text: down ? 'DOWN' : 'UP' }), ` ${health.replace(/^(up|down)(: |, )?/, '')}`),
      el('td', {}, el('span', { class: `badge ${open ? 'down' : b.breaker === 'half-open' ? 'half' : 'up'}`, text: b.breaker }),
        b.open_targets ? ` ${b.open_targets}/${b.targets} open` : ''),
      el('td', { class: 'num', text: ms(b.latency_ewma_ms) }),
      el('td', { class: 'num', text: b.ttft ? `${ms(b.ttft.p50_ms)} / ${ms(b.ttft.p95_ms)}` : '—' }),
      el('td', { class: 'num', text: String(b.in_flight) }),
      el('td', { class: 'num', text: `${b.ok} / ${b.failed}` }),
      el('td', { class: 'num', text: e ? `${e.busy_slots}/${e.slots} · ${e.queue_depth} queued` : '—' }),
      el('td', { class: 'err', text: b.last_error || '', title: b.last_error || undefined }));
  }));
}

// ---- budgets --------------------------------------------------------------------------------

async function loadBudgets() {
  const r = await api('/admin/budgets');
  const now = new Date();
  const days = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).getUTCDate();
  spendBudgetPerDay = r.data.reduce((s, b) => s + (b.period === 'daily' ? b.limit_usd : b.limit_usd / days), 0);
  fill($('budgets-table').tBodies[0], r.data.length ? r.data.map((b) => {
    const used = b.limit_usd > 0 ? b.used_usd / b.limit_usd : 0;
    const bar = el('i');
    bar.style.width = `${Math.min(used, 1) * 100}%`; // CSSOM, allowed by the CSP
    return el('tr', { class: used >= 1 ? 'down' : used >= 0.8 ? 'warn' : '', 'data-budget': `${b.scope}:${b.name}` },
      el('td', { text: `${b.scope} ${b.name} (${b.period})` }),
      el('td', {}, `${usd(b.used_usd)} / ${usd(b.limit_usd)}`, el('div', { class: `bar${used >= 1 ? ' over' : ''}` }, bar)),
      el('td', { class: 'num', text: usd(b.remaining_usd) + (used >= 1 ? ' (exhausted)' : '') }),
      el('td', { text: when(b.resets_at) }));
  }) : [el('tr', {}, el('td', { colspan: '4', text: 'no budgets configured' }))]);
}

// ---- keys -----------------------------------------------------------------------------------

async function loadKeys() {
  const r = await api('/admin/keys');
  const rows = r.data.slice().sort((a, b) => (a.status === 'active' ? 0 : 1) - (b.status === 'active' ? 0 : 1));
  fill($('keys-table').tBodies[0], rows.map((k) => {
    const revoke = k.status === 'active'
      ? el('button', { type: 'button', class: 'revoke', 'data-id': k.id, text: 'Revoke', onclick: (ev) => revokeKey(ev.currentTarget, k.id) })
      : null;
    return el('tr', { class: k.status === 'active' ? '' : 'revoked', 'data-key': k.id, 'data-status': k.status },
      el('td', {}, el('code', { text: k.id })),
      el('td', { text: k.name }),
      el('td', { text: k.team || '' }),
      el('td', { text: k.budget_usd ? `${usd(k.budget_usd)} ${k.budget_period}` : '—' }),
      el('td', { text: when(k.created_at) }),
      el('td', { text: k.status }),
      el('td', {}, revoke));
  }));
}

// Two clicks: the first arms the button, the second revokes (no modal dialog needed).
async function revokeKey(button, id) {
  if (button.dataset.armed !== '1') {
    button.dataset.armed = '1';
    button.textContent = 'Confirm revoke';
    return;
  }
  button.disabled = true;
  try {
    await api(`/admin/keys/${encodeURIComponent(id)}`, { method: 'DELETE' });
    setError('key-error', '');
    await loadKeys();
  } catch (e) {
    if (!(e instanceof AuthError)) setError('key-error', e.message);
    button.disabled = false;
  }
}

async function createKey(ev) {
  ev.preventDefault();
  const body = { name: $('key-name').value.trim() };
  if ($('key-team').value.trim()) body.team = $('key-team').value.trim();
  if ($('key-budget').value) body.budget_usd = Number($('key-budget').value);
  try {
    const k = await api('/admin/keys', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    $('key-secret').hidden = false;
    $('key-secret').replaceChildren('New key ', el('code', { text: k.id }), ' — copy the secret now, it is not shown again: ',
      el('code', { id: 'key-secret-value', text: k.key }));
    $('key-form').reset();
    setError('key-error', '');
    await loadKeys();
  } catch (e) {
    if (!(e instanceof AuthError)) setError('key-error', e.message);
  }
}

// ---- cloud vs local ---------------------------------------------------------------------------

async function loadCompare(ev) {
  if (ev) ev.preventDefault();
  const q = new URLSearchParams({ tokens_per_month: $('compare-volume').value.trim(), output_share: $('compare-share').value.trim() });
  let r;
  try {
    r = await api(`/admin/cost/compare?${q}`);
    setError('compare-error', '');
  } catch (e) {
    if (!(e instanceof AuthError)) setError('compare-error', e.message);
    return;
  }
  fill($('compare-table').tBodies[0], r.data.length ? r.data.map((c) => el('tr', {},
    el('td', { text: `${c.model} (${c.cloud.source}${c.cloud.catalogue_date ? ` ${c.cloud.catalogue_date}` : ''})` }),
    el('td', { text: c.local }),
    el('td', { class: 'num', text: usd(c.cloud.usd_month) }),
    el('td', { class: 'num', text: usd(c.local_cost.fleet_usd_month) + (c.local_cost.machines > 1 ? ` (${c.local_cost.machines} machines)` : '') }),
    el('td', { class: 'num', text: c.break_even_tokens_month === null ? 'never' : count(c.break_even_tokens_month) }),
    el('td', { text: c.cheaper })))
    : [el('tr', {}, el('td', { colspan: '6', text: 'no local backend with cost: { … } and priced cloud target to compare' }))]);
  drawCompare(r);
}

// Cost against monthly volume for the first pair: the cloud grows with tokens, one local
// machine is flat; they cross at the break-even.
function drawCompare(r) {
  const c = r.data[0];
  const W = 600, H = 260, L = 64, R = 14, T = 10, B = 28;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'cloud and local cost against volume' });
  if (!c) {
    $('compare-chart').replaceChildren();
    return;
  }
  const even = c.break_even_tokens_month;
  const maxV = Math.max(r.tokens_per_month, even || 0) * 1.5;
  const perToken = c.cloud.usd_month / r.tokens_per_month;
  const maxY = Math.max(perToken * maxV, c.local_cost.usd_month) * 1.1;
  const x = (v) => L + (W - L - R) * (v / maxV);
  const y = (v) => T + (H - T - B) * (1 - v / maxY);
  const axis = svg('g', { class: 'axis' });
  for (let i = 0; i <= 4; i++) {
    axis.append(svg('text', { x: L - 6, y: y((maxY / 4) * i) + 4, 'text-anchor': 'end' }, document.createTextNode(usd((maxY / 4) * i))),
      svg('text', { x: x((maxV / 4) * i), y: H - 10, 'text-anchor': 'middle' }, document.createTextNode(count((maxV / 4) * i))),
      svg('line', { x1: L, x2: W - R, y1: y((maxY / 4) * i), y2: y((maxY / 4) * i) }));
  }
  chart.append(axis,
    titled(svg('path', { class: 'cloud-line', d: `M${x(0)},${y(0)} L${x(maxV)},${y(perToken * maxV)}` }), `cloud: ${c.model}`),
    titled(svg('path', { class: 'local-line', d: `M${x(0)},${y(c.local_cost.usd_month)} L${x(maxV)},${y(c.local_cost.usd_month)}` }), `local: ${c.local}, one machine`));
  if (even) {
    chart.append(titled(svg('circle', { class: 'even', cx: x(even), cy: y(c.local_cost.usd_month), r: 4 }), `break-even: ${count(even)} tokens/month`),
      svg('text', { class: 'label', x: x(even) + (x(even) > W * 0.6 ? -6 : 6), y: y(c.local_cost.usd_month) - 8, 'text-anchor': x(even) > W * 0.6 ? 'end' : 'start' }, document.createTextNode(`break-even ${count(even)} tokens/month`)));
  }
  const legend = svg('g', { class: 'legend' });
  legend.append(svg('line', { class: 'cloud-line', x1: L + 8, x2: L + 26, y1: T + 6, y2: T + 6 }), svg('text', { x: L + 30, y: T + 10 }, document.createTextNode(`cloud ${c.model}`)),
    svg('line', { class: 'local-line', x1: L + 8, x2: L + 26, y1: T + 20, y2: T + 20 }), svg('text', { x: L + 30, y: T + 24 }, document.createTextNode(`local ${c.local}`)));
  chart.append(legend);
  $('compare-chart').replaceChildren(chart);
}

// ---- refresh, sign in, sign out --------------------------------------------------------------

function status(text) {
  $('status').textContent = text;
}

async function refresh(all) {
  try {
    const budgets = loadBudgets();
    const jobs = [budgets, loadBackends()];
    if (all) jobs.push(budgets.then(loadSpend), loadRouting(), loadKeys()); // spend: the budget line
    await Promise.all(jobs);
    status(`updated ${new Date().toISOString().slice(11, 19)} UTC`);
    return true;
  } catch (e) {
    if (!(e instanceof AuthError)) status(`refresh failed: ${e.message}`);
    return false;
  }
}

function tick() {
  ticks++;
  refresh(ticks % SLOW_EVERY === 0);
}

async function start() {
  $('login').hidden = true;
  $('app').hidden = false;
  const ok = await Promise.all([refresh(true), loadCompare()]);
  if (!sessionStorage.getItem(KEY)) return; // signed out meanwhile (401)
  // For tests and the first-load benchmark: everything drawn once.
  document.body.dataset.ready = ok[0] ? 'ok' : 'error';
  document.body.dataset.readyMs = performance.now().toFixed(1);
  clearInterval(timer);
  timer = setInterval(tick, LIVE_MS);
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  timer = null;
  delete document.body.dataset.ready;
  $('app').hidden = true;
  $('login').hidden = false;
  setError('login-error', message || '');
  $('login-key').value = '';
  $('login-key').focus();
}

async function signIn(ev) {
  ev.preventDefault(); // never a form submission: nothing goes into a URL or the history
  const key = $('login-key').value.trim();
  if (!key) return;
  setError('login-error', '');
  // Try the key before keeping it: a wrong one is said so here, not after a flash of the app.
  const res = await fetch('/admin/backends', { headers: { Authorization: `Bearer ${key}` }, cache: 'no-store' }).catch(() => null);
  if (!res || !res.ok) {
    const body = res ? await res.json().catch(() => null) : null;
    setError('login-error', res ? `Sign-in failed (${res.status}): ${body?.error?.message || 'refused'}` : 'The gateway did not answer.');
    return;
  }
  sessionStorage.setItem(KEY, key);
  $('login-key').value = '';
  start();
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', signIn);
  $('logout').addEventListener('click', () => signOut('Signed out.'));
  $('key-form').addEventListener('submit', createKey);
  $('compare-form').addEventListener('submit', loadCompare);
  $('spend-by').addEventListener('change', () => loadSpend().catch((e) => status(e.message)));
  $('spend-range').addEventListener('change', () => loadSpend().catch((e) => status(e.message)));
  if (sessionStorage.getItem(KEY)) start();
  else signOut('');
});
