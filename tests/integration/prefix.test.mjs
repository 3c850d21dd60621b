// The engine's prompt-prefix (KV) cache (#14 item 2): two local backends on the same tiny
// model, one with the cache (the default) and one with `prefix_cache: false`, must give
// identical greedy answers — for a repeated request, a multi-turn chat that extends the
// previous turn, and concurrent requests sharing a system prompt — while the cached one
// reports reused tokens (usage.prompt_tokens_details.cached_tokens, the worker's figures
// in /ready, stratus_engine_prefix_tokens_reused_total in /metrics).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { startGateway, waitFor } from './lib/gateway.mjs';
import { promtoolCheck, samples, value } from './lib/prometheus.mjs';

const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
let gw;

// A system prompt of a few hundred tokens, the kind many requests share.
const SYSTEM = Array.from({ length: 40 }, (_, i) =>
  `Rule ${i + 1}: answer politely, cite the policy section ${i * 7 % 13}, and keep it short.`).join(' ');

function yaml({ plainCache = false } = {}) {
  const b = (name, extra = '') =>
    `  - { name: ${name}, type: local, model_path: "${MODEL}", parallel: 2, threads: 2, ctx_size: 2048${extra} }\n`;
  return `log: { requests: false }\nbackends:\n${b('cached')}${b('plain', plainCache ? '' : ', prefix_cache: false')}` +
    'models:\n  - { name: cached, targets: [ { backend: cached, model: m } ] }\n' +
    '  - { name: plain, targets: [ { backend: plain, model: m } ] }\n';
}

before(async () => {
  assert.ok(existsSync(MODEL), `${MODEL} is missing: run make models`);
  gw = await startGateway(yaml());
  await waitFor(async () => {
    const j = await (await fetch(`${gw.baseURL}/ready`)).json();
    return j.backends.every((x) => x.ready);
  }, { timeout: 30000, what: 'both engines to load' });
});

after(async () => {
  assert.equal(await gw?.stop(), 0, gw?.stderr.slice(-3000));
});

async function chat(model, messages, extra = {}) {
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages, temperature: 0, seed: 7, max_tokens: 24, ...extra }),
  });
  const j = await res.json();
  assert.equal(res.status, 200, JSON.stringify(j));
  return { text: j.choices[0].message.content, usage: j.usage };
}

async function engineStats(name) {
  const j = await (await fetch(`${gw.baseURL}/ready`)).json();
  return j.backends.find((b) => b.name === name).engine;
}

test('the same greedy request twice: identical answers with and without the cache; the second reuses all but one prompt token', async () => {
  const msgs = [{ role: 'system', content: SYSTEM }, { role: 'user', content: 'Where is my parcel?' }];
  const a1 = await chat('cached', msgs);
  const a2 = await chat('cached', msgs);
  const p1 = await chat('plain', msgs);
  const p2 = await chat('plain', msgs);
  assert.ok(a1.usage.prompt_tokens > 300, `a long shared prompt (${a1.usage.prompt_tokens} tokens)`);
  assert.equal(a1.text, p1.text, 'the cache must not change the answer');
  assert.equal(a2.text, p1.text);
  assert.equal(p2.text, p1.text);
  assert.equal(a1.usage.prompt_tokens_details.cached_tokens, 0, 'nothing was cached yet');
  // Every prompt token but the last, which is decoded again for its logits.
  assert.equal(a2.usage.prompt_tokens_details.cached_tokens, a2.usage.prompt_tokens - 1);
  assert.equal(p2.usage.prompt_tokens_details.cached_tokens, 0, 'prefix_cache: false');
  // The stream path answers the same text from the cache.
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'cached', messages: msgs, temperature: 0, seed: 7, max_tokens: 24, stream: true }),
  });
  let text = '';
  for (const ev of (await res.text()).split('\n\n')) {
    if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
    text += JSON.parse(ev.slice(6)).choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, p1.text);
});

test('a multi-turn chat: the next turn reuses the previous turn and answers as without the cache', async () => {
  const turn1 = [{ role: 'system', content: SYSTEM }, { role: 'user', content: 'My order 1234 is late.' }];
  const c1 = await chat('cached', turn1);
  const q1 = await chat('plain', turn1);
  assert.equal(c1.text, q1.text);
  const turn2 = [...turn1, { role: 'assistant', content: c1.text }, { role: 'user', content: 'And now?' }];
  const c2 = await chat('cached', turn2);
  const q2 = await chat('plain', turn2);
  assert.equal(c2.text, q2.text, 'the cache must not change the answer');
  // At least the first turn's prompt (the system prompt and the first question) came
  // from the cache.
  assert.ok(c2.usage.prompt_tokens_details.cached_tokens >= c1.usage.prompt_tokens - 1,
    `reused ${c2.usage.prompt_tokens_details.cached_tokens} of turn 1's ${c1.usage.prompt_tokens}`);
  assert.equal(q2.usage.prompt_tokens_details.cached_tokens, 0);
  // A third turn that goes back and edits the second question keeps the shared part only.
  const edited = [...turn1, { role: 'assistant', content: c1.text }, { role: 'user', content: 'Forget it.' }];
  const c3 = await chat('cached', edited);
  const q3 = await chat('plain', edited);
  assert.equal(c3.text, q3.text);
  assert.ok(c3.usage.prompt_tokens_details.cached_tokens > c1.usage.prompt_tokens / 2);
});

test('concurrent requests sharing a system prompt, more than the slots: the same answers as without the cache', async () => {
  const users = ['Refund please.', 'Cancel my plan.', 'What are your hours?', 'Refund please.', 'Hello'];
  const msgs = (u) => [{ role: 'system', content: SYSTEM }, { role: 'user', content: u }];
  const want = [];
  for (const u of users) want.push((await chat('plain', msgs(u))).text);
  for (let round = 0; round < 2; round++) {
    const got = await Promise.all(users.map((u) => chat('cached', msgs(u))));
    assert.deepEqual(got.map((g) => g.text), want, `round ${round}`);
    if (round === 1) assert.ok(got.every((g) => g.usage.prompt_tokens_details.cached_tokens > 0));
  }
});

test('/ready and /metrics report the reused prompt tokens per backend', async () => {
  const s = await waitFor(async () => {
    const e = await engineStats('cached');
    return e && e.prefix_hits >= 3 ? e : null;
  }, { timeout: 10000, what: 'prefix figures in /ready' });
  assert.ok(s.prefix_tokens_reused > 300, JSON.stringify(s));
  assert.ok(s.prompt_tokens_total > s.prefix_tokens_reused);
  const plain = await engineStats('plain');
  assert.equal(plain.prefix_tokens_reused, 0);
  assert.equal(plain.prefix_hits, 0);
  assert.ok(plain.prompt_tokens_total > 0);
  const text = await (await fetch(`${gw.baseURL}/metrics`)).text();
  const { code, output } = await promtoolCheck(text);
  assert.equal(code, 0, `promtool check metrics: ${output}`);
  const all = samples(text);
  const reused = value(all, 'stratus_engine_prefix_tokens_reused_total', { backend: 'cached' });
  assert.ok(reused >= s.prefix_tokens_reused, `${reused} >= ${s.prefix_tokens_reused}`);
  assert.equal(value(all, 'stratus_engine_prefix_tokens_reused_total', { backend: 'plain' }), 0);
});

test('a reload that changes prefix_cache replaces that worker only; the new one caches', async () => {
  writeFileSync(gw.file, yaml({ plainCache: true }));
  const res = await fetch(`${gw.baseURL}/admin/reload`, { method: 'POST' });
  const r = await res.json();
  assert.equal(res.status, 200, JSON.stringify(r));
  assert.deepEqual(r.engines, { kept: 1, started: 1, stopped: 1 });
  await waitFor(async () => {
    const j = await (await fetch(`${gw.baseURL}/ready`)).json();
    return j.backends.every((x) => x.ready) && j.backends.find((b) => b.name === 'plain').engine?.prefix_hits === 0;
  }, { timeout: 30000, what: 'the new plain worker' });
  const msgs = [{ role: 'system', content: SYSTEM }, { role: 'user', content: 'Again?' }];
  await chat('plain', msgs);
  const again = await chat('plain', msgs);
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, again.usage.prompt_tokens - 1);
});
