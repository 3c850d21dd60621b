// Local inference through the gateway: a generated tiny llama GGUF (random weights, so the
// text is gibberish — tests check tokens, structure and determinism, not prose) served by
// supervised `stratus engine` workers, driven by the official openai SDK.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, waitFor, SCALE } from './lib/gateway.mjs';
import { isJsonPrefix } from './lib/json-prefix.mjs';
import { samples, value } from './lib/prometheus.mjs';

const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
let gw, client, fake;

function localConfig({ name = 'local', parallel = 4, ctx = 512, model = MODEL, extra = '', fakeUrl, cost } = {}) {
  let y = `log: { requests: true }\n${extra}\nbackends:\n`;
  const tco = cost ? `, cost: { ${Object.entries(cost).map(([k, v]) => `${k}: ${v}`).join(', ')} }` : '';
  y += `  - { name: ${name}, type: local, model_path: "${model}", parallel: ${parallel}, threads: 2, ctx_size: ${ctx}${tco} }\n`;
  if (fakeUrl) y += `  - { name: fake, type: openai, base_url: "${fakeUrl}" }\n`;
  y += `models:\n  - { name: tiny, targets: [ { backend: ${name}, model: tiny } ] }\n`;
  if (fakeUrl) {
    y += `  - { name: tiny-or-fake, targets: [ { backend: ${name}, model: tiny }, { backend: fake, model: ok } ] }\n`;
    y += `  - { name: cloud, targets: [ { backend: fake, model: ok } ] }\n`;
  }
  return y;
}

// Every local backend loaded (a group with a reachable remote target makes /ready 200
// before that, so the backends themselves are asked).
async function ready(g) {
  await waitFor(async () => {
    const r = await fetch(`${g.baseURL}/ready`);
    const j = await r.json();
    return j.backends.every((b) => b.ready || b.name === 'fake');
  }, { timeout: 30000, what: 'the model to load' });
}

const ask = (content, extra = {}) => client.chat.completions.create({
  model: 'tiny', temperature: 0, max_tokens: 24, messages: [{ role: 'user', content }], ...extra,
});

async function streamText(content, extra = {}) {
  const s = await client.chat.completions.create({
    model: 'tiny', temperature: 0, max_tokens: 24, stream: true, messages: [{ role: 'user', content }], ...extra,
  });
  let text = '';
  let finish = null;
  for await (const c of s) {
    text += c.choices[0]?.delta?.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return { text, finish };
}

before(async () => {
  assert.ok(existsSync(MODEL), `${MODEL} is missing: run make models`);
  fake = await startFake();
  gw = await startGateway(localConfig({ fakeUrl: fake.url }));
  client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'x', maxRetries: 0, timeout: 60000 * SCALE });
  await ready(gw);
});

after(async () => {
  await gw?.stop();
  await fake?.close();
});

test('chat completion from the local model: text, usage, length finish, headers', async () => {
  const { data, response } = await ask('Hello there').withResponse();
  assert.equal(response.headers.get('x-stratus-backend'), 'local');
  assert.equal(typeof data.choices[0].message.content, 'string');
  assert.ok(data.choices[0].message.content.length > 0);
  assert.equal(data.choices[0].finish_reason, 'length');
  assert.equal(data.usage.completion_tokens, 24);
  assert.ok(data.usage.prompt_tokens > 5, 'the chat template wraps the message');
  assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + 24);
});

test('greedy decoding is deterministic, and the stream carries exactly the same text', async () => {
  const a = await ask('Determinism please');
  const b = await ask('Determinism please');
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  const s = await streamText('Determinism please');
  assert.equal(s.text, a.choices[0].message.content);
  assert.equal(s.finish, 'length');
  // This prompt's answer has multi-byte characters (the tiny model's vocabulary is full of
  // them), so chunking by token would split some; every chunk arrived as valid UTF-8 JSON.
  assert.match(s.text, /[^\x00-\x7f]/);
});

test('8 concurrent greedy requests produce exactly the tokens of the same requests run one at a time', async () => {
  const prompts = Array.from({ length: 8 }, (_, i) => `Prompt number ${i}: tell me about ${'abcdefgh'[i]}`);
  const sequential = [];
  for (const p of prompts) sequential.push((await ask(p)).choices[0].message.content);
  const concurrent = (await Promise.all(prompts.map((p) => ask(p)))).map((r) => r.choices[0].message.content);
  assert.deepEqual(concurrent, sequential);
  assert.ok(new Set(sequential).size > 1, 'different prompts give different text');
});

// Chunked prefill: a gateway with the same model twice — prompts fed 16 tokens a step, and
// whole (prefill_chunk above the batch: every prompt token the step has room for). The
// prefix cache is off on both so every prompt token really goes through the chunks.
function chunkConfig() {
  const b = (name, chunk, parallel) =>
    `  - { name: ${name}, type: local, model_path: "${MODEL}", parallel: ${parallel}, threads: 2, ctx_size: 1024, prefill_chunk: ${chunk}, prefix_cache: false }\n`;
  return `log: { requests: true }\nbackends:\n${b('chunked', 16, 4)}${b('whole', 4096, 4)}` +
    'models:\n  - { name: chunked, targets: [ { backend: chunked, model: tiny } ] }\n' +
    '  - { name: whole, targets: [ { backend: whole, model: tiny } ] }\n';
}

test('chunked prefill: long prompts (several chunks) and short ones, concurrent or staggered, give the tokens of the same requests run one at a time unchunked', async () => {
  const g = await startGateway(chunkConfig());
  try {
    await ready(g);
    const c = new OpenAI({ baseURL: `${g.baseURL}/v1`, apiKey: 'x', maxRetries: 0, timeout: 120000 * SCALE });
    const words = (n, k) => Array.from({ length: n }, (_, i) => `${'abcdefghij'[(i * 7 + k) % 10]}${i % 13}`).join(' ');
    const prompts = [
      ...[0, 1, 2].map((k) => `Long prompt ${k}: ${words(40 + 10 * k, k)}`),
      ...[0, 1, 2, 3, 4].map((k) => `Short ${k} about ${'vwxyz'[k]}`),
    ];
    const req = (model, content) => ({ model, temperature: 0, max_tokens: 16, messages: [{ role: 'user', content }] });
    const one = async (model, content, stream) => {
      if (!stream) {
        const r = await c.chat.completions.create(req(model, content));
        return { text: r.choices[0].message.content, prompt: r.usage.prompt_tokens };
      }
      const s = await c.chat.completions.create({ ...req(model, content), stream: true, stream_options: { include_usage: true } });
      let text = '', prompt = 0;
      for await (const ch of s) {
        text += ch.choices[0]?.delta?.content ?? '';
        if (ch.usage) prompt = ch.usage.prompt_tokens;
      }
      return { text, prompt };
    };
    const sequential = [];
    for (const p of prompts) sequential.push(await one('whole', p, false));
    for (let k = 0; k < 3; k++) assert.ok(sequential[k].prompt >= 3 * 16, `long prompt ${k} has ${sequential[k].prompt} tokens: several chunks`);
    const want = sequential.map((r) => r.text);
    assert.ok(new Set(want).size > 4, 'different prompts give different text');
    // Everything at once (more requests than slots: some queue), streams and whole answers mixed.
    const together = await Promise.all(prompts.map((p, i) => one('chunked', p, i % 2 === 1)));
    assert.deepEqual(together.map((r) => r.text), want);
    assert.deepEqual(together.map((r) => r.prompt), sequential.map((r) => r.prompt));
    // Short requests already streaming when the long prompts arrive, and short ones after.
    const staggered = [];
    for (const i of [3, 4, 0, 1, 5, 2, 6, 7]) {
      staggered[i] = one('chunked', prompts[i], i % 2 === 0);
      await new Promise((r) => setTimeout(r, 15));
    }
    assert.deepEqual((await Promise.all(staggered)).map((r) => r.text), want);
  } finally {
    await g.stop();
  }
});

test('a client that disconnects while its long prompt is being prefilled in chunks frees the slot; every slot serves afterwards', async () => {
  // 2 prompt tokens a step: a ~1,100-token prompt takes hundreds of steps to prefill.
  const g = await startGateway(localConfig({ parallel: 2, ctx: 2048 }).replace('ctx_size: 2048 }', 'ctx_size: 2048, prefill_chunk: 2 }'));
  try {
    await ready(g);
    const long = Array.from({ length: 300 }, (_, i) => `w${i}`).join(' ');
    const ac = new AbortController();
    let got = '';
    const streaming = fetch(`${g.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      // Left alone it would hold the slot for many seconds: the prefill, then 900 tokens.
      body: JSON.stringify({ model: 'tiny', temperature: 0, max_tokens: 900, ignore_eos: true, stream: true, messages: [{ role: 'user', content: long }] }),
    }).then(async (res) => {
      const reader = res.body.getReader();
      for (;;) {
        const { value: v, done } = await reader.read();
        if (done) break;
        got += Buffer.from(v).toString();
      }
    }).catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    ac.abort();
    await streaming;
    assert.doesNotMatch(got, /"content":"[^"]/, 'no token came before the disconnect: it was mid-prefill');
    const stats = async () => (await (await fetch(`${g.baseURL}/ready`)).json()).backends.find((b) => b.name === 'local').engine;
    // The worker is probed every second: freed, its slot shows idle well before the job
    // could have ended by itself.
    const idle = await waitFor(async () => {
      const e = await stats();
      return e && e.busy_slots === 0 && e.queue_depth === 0 && e.prompt_tokens_total > 1000 ? e : null;
    }, { timeout: 2500, what: 'the slot to be freed' });
    assert.equal(idle.slots, 2);
    // Both slots serve: two requests at once (one of them the same long prompt) both finish.
    const post = (content) => fetch(`${g.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', temperature: 0, max_tokens: 4, messages: [{ role: 'user', content }] }),
    }).then((r) => r.json());
    const [a, b] = await Promise.all([post(long), post('short')]);
    assert.equal(a.usage.completion_tokens, 4, JSON.stringify(a));
    assert.equal(b.usage.completion_tokens, 4, JSON.stringify(b));
  } finally {
    await g.stop();
  }
});

test('ignore_eos: exactly max_tokens tokens even where the model would end (logit_bias forces the end token), whole and streamed', async () => {
  const EOS = 2; // </s> in llama.cpp's SentencePiece vocabulary, which the tiny model uses
  const forced = await ask('Say nothing', { max_tokens: 12, logit_bias: { [EOS]: 100 } });
  assert.equal(forced.choices[0].finish_reason, 'stop', 'the bias makes the model end at once');
  assert.equal(forced.usage.completion_tokens, 0);
  const r = await ask('Say nothing', { max_tokens: 12, logit_bias: { [EOS]: 100 }, ignore_eos: true });
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 12);
  assert.ok(r.choices[0].message.content.length > 0);
  const s = await client.chat.completions.create({
    model: 'tiny', temperature: 0.8, seed: 3, max_tokens: 12, stream: true, stream_options: { include_usage: true },
    logit_bias: { [EOS]: 100 }, ignore_eos: true, messages: [{ role: 'user', content: 'Say nothing' }],
  });
  let finish = null, usage = null, text = '';
  for await (const c of s) {
    text += c.choices[0]?.delta?.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
    usage = c.usage ?? usage;
  }
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
  assert.ok(text.length > 0);
  // Type-checked by the gateway; a token the model does not have is the engine's 400.
  await assert.rejects(ask('x', { ignore_eos: 'yes' }), (e) => e.status === 400 && /ignore_eos/.test(e.message));
  await assert.rejects(ask('x', { logit_bias: { 999999: 1 } }), (e) => e.status === 400 && /logit_bias/.test(e.message));
});

test('stop strings end the answer before the stop text, across token boundaries', async () => {
  const full = (await ask('Stop test', { max_tokens: 40 })).choices[0].message.content;
  // A stop string from the middle of the greedy answer, starting inside a token.
  const cut = Math.floor(full.length / 2);
  const stop = full.slice(cut, cut + 3);
  const r = await ask('Stop test', { max_tokens: 40, stop: [stop] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].message.content, full.slice(0, full.indexOf(stop)));
  const s = await streamText('Stop test', { max_tokens: 40, stop: [stop] });
  assert.equal(s.text, r.choices[0].message.content);
  assert.equal(s.finish, 'stop');
});

test('JSON mode output is always JSON: complete when the model stops, a valid JSON prefix when max_tokens cuts it', async () => {
  // Sanity of the checker itself.
  assert.ok(isJsonPrefix('{"a": [1, 2.5, "x\\u00e9'));
  assert.ok(!isJsonPrefix('{"a" 1'));
  assert.ok(!isJsonPrefix('Hello {'));
  // Without the grammar this random-weights model writes arbitrary text.
  const free = (await ask('Give me JSON', { max_tokens: 40, temperature: 0.7, seed: 7 })).choices[0].message.content;
  assert.ok(!isJsonPrefix(free.trimStart()), `unconstrained text happened to be JSON: ${free}`);
  for (const seed of [1, 2, 3]) {
    const r = await ask('Give me JSON', { response_format: { type: 'json_object' }, max_tokens: 120, temperature: 0.7, seed });
    const content = r.choices[0].message.content;
    assert.ok(content.trimStart().startsWith('{'), content);
    if (r.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(content), 'object');
    else assert.ok(isJsonPrefix(content), `not a JSON prefix: ${content}`);
  }
});

test('logprobs: chat (whole and streamed) and completions report each token with its alternatives, consistent with the text', async () => {
  const r = await ask('Tell me', { max_tokens: 6, logprobs: true, top_logprobs: 3 });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  assert.equal(content.map((t) => t.token).join(''), r.choices[0].message.content);
  for (const t of content) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
    for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i - 1].logprob >= t.top_logprobs[i].logprob);
    // Greedy: the token chosen is the most likely one.
    assert.equal(t.token, t.top_logprobs[0].token);
    assert.equal(t.logprob, t.top_logprobs[0].logprob);
  }
  // Without top_logprobs: the tokens alone, no alternatives.
  const bare = await ask('Tell me', { max_tokens: 6, logprobs: true });
  assert.deepEqual(bare.choices[0].logprobs.content.map((t) => [t.token, t.logprob, t.top_logprobs.length]),
    content.map((t) => [t.token, t.logprob, 0]));
  // Not asked: null, as OpenAI answers.
  assert.equal((await ask('Tell me', { max_tokens: 2 })).choices[0].logprobs, null);
  // Streamed: each chunk carries the entries of its own text; together the same as whole.
  const s = await client.chat.completions.create({ model: 'tiny', temperature: 0, max_tokens: 6, stream: true,
    logprobs: true, top_logprobs: 3, messages: [{ role: 'user', content: 'Tell me' }] });
  const streamed = [];
  for await (const c of s) {
    const d = c.choices[0];
    if (d?.logprobs?.content) {
      assert.equal(d.logprobs.content.map((t) => t.token).join(''), d.delta.content);
      streamed.push(...d.logprobs.content);
    }
  }
  assert.deepEqual(streamed, content);
  // Completions: the legacy shape, parallel arrays and text offsets.
  const c = await client.completions.create({ model: 'tiny', prompt: 'Once upon', max_tokens: 5, temperature: 0, logprobs: 2 });
  const lp = c.choices[0].logprobs;
  assert.equal(lp.tokens.join(''), c.choices[0].text);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.equal(lp.top_logprobs.length, lp.tokens.length);
  assert.ok(lp.top_logprobs.every((o) => Object.keys(o).length >= 1 && Object.keys(o).length <= 2));
  let offset = 0;
  lp.tokens.forEach((t, i) => { assert.equal(lp.text_offset[i], offset); offset += Buffer.byteLength(t); });
});

test('a prompt longer than the context is a 400 naming both numbers', async () => {
  await assert.rejects(ask('word '.repeat(2000)), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.error.message, /prompt has \d+ tokens but the context holds 512/);
    return true;
  });
});

test('a killed worker is restarted, and a model with a second target fails over meanwhile', async () => {
  const started = gw.logs.filter((l) => l.event === 'engine_started');
  const pid = started[started.length - 1].pid;
  process.kill(pid, 'SIGKILL');
  await gw.waitForLog((l) => l.event === 'engine_exited' && l.pid === pid);
  const r = await client.chat.completions.create({ model: 'tiny-or-fake', messages: [{ role: 'user', content: 'x' }] }).withResponse();
  assert.equal(r.response.headers.get('x-stratus-backend'), 'fake', 'served by the second target while local restarts');
  await gw.waitForLog((l) => l.event === 'engine_started' && l.pid !== pid, 10000);
  await ready(gw);
  const again = await ask('after restart').catch((e) => { throw new Error(e.message + '\n' + gw.stderr.split('\n').filter((l) => !l.includes('"event":"request"')).slice(-12).join('\n')); });
  assert.equal(again.choices[0].finish_reason, 'length');
});

test('a client that disconnects frees its slot at once', async () => {
  const g = await startGateway(localConfig({ parallel: 1, ctx: 4096 }));
  try {
    await ready(g);
    const c = new OpenAI({ baseURL: `${g.baseURL}/v1`, apiKey: 'x', maxRetries: 0 });
    const ac = new AbortController();
    const long = await c.chat.completions.create({
      model: 'tiny', temperature: 0, max_tokens: 3000, stream: true, messages: [{ role: 'user', content: 'go on forever' }],
    }, { signal: ac.signal });
    const it = long[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    ac.abort();
    // With the only slot freed, a short request starts and ends promptly.
    const t0 = Date.now();
    const r = await c.chat.completions.create({ model: 'tiny', temperature: 0, max_tokens: 4, messages: [{ role: 'user', content: 'next' }] });
    assert.equal(r.usage.completion_tokens, 4);
    assert.ok(Date.now() - t0 < 5000 * SCALE, `waited ${Date.now() - t0} ms for the slot`);
  } finally {
    await g.stop();
  }
});

test('a bad model file is a clear error naming the file; other backends keep serving', async () => {
  const bad = resolve('build/models/not-a-model.gguf');
  writeFileSync(bad, 'this is not a GGUF file');
  const f = await startFake();
  const g = await startGateway(localConfig({ name: 'broken', model: bad, fakeUrl: f.url }));
  try {
    const line = await g.waitForLog((l) => l.event === 'model_failed', 20000);
    assert.match(line.message, /not-a-model\.gguf is not a GGUF file/);
    const r = await fetch(`${g.baseURL}/ready`);
    assert.equal(r.status, 503);
    const body = await r.json();
    assert.equal(body.backends.find((b) => b.name === 'broken').ready, false);
    const ok = await fetch(`${g.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'cloud', messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(ok.status, 200);
  } finally {
    await g.stop();
    await f.close();
  }
});

test('/ready reports the worker\'s slots, queue and speed', async () => {
  await ask('warm the stats');
  const body = await waitFor(async () => {
    const j = await (await fetch(`${gw.baseURL}/ready`)).json();
    const b = j.backends.find((x) => x.name === 'local');
    return b.engine && b.engine.ttft_ms > 0 ? b : null;
  }, { timeout: 10000, what: 'engine stats in /ready' });
  assert.equal(body.engine.slots, 4);
  assert.equal(typeof body.engine.busy_slots, 'number');
  assert.equal(typeof body.engine.queue_depth, 'number');
  assert.equal(typeof body.engine.tokens_per_s, 'number');
  // Where requests' time went: the worker's recent averages, probed into /ready and /metrics.
  const t = await waitFor(async () => {
    const j = await (await fetch(`${gw.baseURL}/ready`)).json();
    const e = j.backends.find((x) => x.name === 'local').engine;
    return e.prefill_ms_avg > 0 && e.decode_ms_avg > 0 ? e : null;
  }, { timeout: 10000, what: 'timing averages in /ready' });
  assert.ok(t.queue_ms_avg >= 0);
  const text = await (await fetch(`${gw.baseURL}/metrics`)).text();
  const all = samples(text);
  for (const [name, ms] of [['stratus_engine_queue_wait_seconds', 'queue_ms_avg'], ['stratus_engine_prefill_seconds', 'prefill_ms_avg'], ['stratus_engine_decode_seconds', 'decode_ms_avg']]) {
    const v = value(all, name, { backend: 'local' });
    assert.equal(typeof v, 'number', name);
    assert.ok(v >= 0 && (ms === 'queue_ms_avg' || v > 0), `${name} = ${v}`);
  }
});

test('embeddings: one unit-length vector per input, deterministic, float and base64', async () => {
  // The SDK asks for base64 by default and decodes it; float is checked with raw HTTP.
  const r = await client.embeddings.create({ model: 'tiny', input: ['first text', 'second, different text'] });
  assert.equal(r.data.length, 2);
  assert.equal(r.data[0].embedding.length, 64, 'the model is 64 wide');
  for (const d of r.data) {
    const norm = Math.sqrt(d.embedding.reduce((a, x) => a + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-3, `unit length, got ${norm}`);
  }
  assert.notDeepEqual(r.data[0].embedding, r.data[1].embedding);
  assert.ok(r.usage.prompt_tokens > 4);
  const raw = await (await fetch(`${gw.baseURL}/v1/embeddings`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', input: 'first text', encoding_format: 'float' }),
  })).json();
  const a = raw.data[0].embedding, b = r.data[0].embedding;
  assert.equal(a.length, 64);
  assert.ok(a.every((x, i) => Math.abs(x - b[i]) < 1e-6), 'float and base64 carry the same vector');
});

test('all slots busy and the queue full → 429 with Retry-After', async () => {
  const g = await startGateway(localConfig({ parallel: 1, ctx: 4096, extra: '' }).replace('ctx_size: 4096 }', 'ctx_size: 4096, max_queue: 1 }'));
  try {
    await ready(g);
    const post = (max_tokens) => fetch(`${g.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', temperature: 0, max_tokens, stream: true, messages: [{ role: 'user', content: 'busy' }] }),
    });
    const first = await post(3000);           // takes the only slot
    const reader = first.body.getReader();
    await reader.read();
    const second = post(3000);                // waits in the queue (max_queue: 1)
    await new Promise((r) => setTimeout(r, 300));
    const third = await post(10);             // no room left
    assert.equal(third.status, 429);
    assert.ok(Number(third.headers.get('retry-after')) >= 1);
    const busy = (await third.json()).error;
    // The engine's own words and code, not a generic "all 2 targets failed".
    assert.equal(busy.code, 'engine_busy');
    assert.match(busy.message, /slots are busy/);
    assert.doesNotMatch(busy.message, /targets failed/);
    assert.match(busy.message, /attempts on 1 target failed|all 1 target failed/);
    await reader.cancel();
    (await second).body?.cancel();
  } finally {
    await g.stop();
  }
});

test('a missing or corrupt model file is named in the error', async () => {
  const { readFileSync } = await import('node:fs');
  const corrupt = resolve('build/models/corrupt.gguf');
  writeFileSync(corrupt, readFileSync(MODEL).subarray(0, 4096)); // GGUF magic, truncated
  for (const [model, why] of [
    [resolve('build/models/does-not-exist.gguf'), /does-not-exist\.gguf: No such file or directory \(run make models\)/],
    [corrupt, /corrupt\.gguf could not be loaded/],
  ]) {
    const g = await startGateway(localConfig({ model }));
    try {
      // A missing file is found before a worker starts; a corrupt one by the worker.
      const line = await g.waitForLog((l) => l.event === 'model_failed' || l.event === 'engine_model_missing', 20000);
      assert.match(line.message, why);
      assert.equal((await fetch(`${g.baseURL}/ready`)).status, 503);
    } finally {
      await g.stop();
    }
  }
});

test('an engine that is down answers 503 engine_not_ready naming the cause, tried once, never "connect failed"', async () => {
  const missing = resolve('build/models/does-not-exist.gguf');
  const g = await startGateway(localConfig({ model: missing }).replace('models:\n', 'models:\n  - { name: retried, retry: { retries: 2, backoff_ms: 1 }, targets: [ { backend: local, model: tiny } ] }\n'));
  try {
    await g.waitForLog((l) => l.event === 'engine_model_missing', 20000);
    for (const model of ['tiny', 'retried']) {
      const r = await fetch(`${g.baseURL}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, max_tokens: 3, messages: [{ role: 'user', content: 'x' }] }),
      });
      assert.equal(r.status, 503);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      const { error } = await r.json();
      assert.equal(error.code, 'engine_not_ready');
      assert.equal(error.message, `local engine 'local' not running: model file ${missing}: No such file or directory (run make models)`);
      assert.doesNotMatch(error.message, /connect|port 80/);
    }
    const lines = await waitFor(() => {
      const l = g.logs.filter((x) => x.event === 'request' && x.status === 503);
      return l.length === 2 ? l : null;
    }, { what: 'two request log lines' });
    assert.ok(lines.every((l) => l.attempts === 0), 'no attempt reached the dead engine');
  } finally {
    await g.stop();
  }
});

// A TCO dear enough that a few milliseconds of a tiny model show in x-stratus-cost-usd's 8
// decimals: 500 kW at $2/kWh plus $8.76M over 12 months = $2000 an hour.
const TCO = { watts: 500000, kwh_price: 2, hardware_price: 8760000, lifetime_months: 12 };
const usdPerHour = TCO.watts / 1000 * TCO.kwh_price + TCO.hardware_price / (TCO.lifetime_months * 730);
const engineCost = (timings) => timings.engine_ms / 3.6e6 * usdPerHour;
// A JSON number written with more than 6 decimals (string contents left out: the text is
// gibberish that may hold digits; the gateway's own cost_usd has 8 by design).
const noisyNumber = (raw) => raw.replace(/"cost_usd":[\d.]+/g, '').replace(/"(?:[^"\\]|\\.)*"/g, '""')
  .match(/[:,[]-?\d+\.\d{7,}/);

test('a TCO-priced local request costs its engine time from the first request: body, stream and ledger agree', async () => {
  const g = await startGateway(localConfig({ cost: TCO }));
  try {
    await ready(g);
    const post = (body) => fetch(`${g.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', temperature: 0.7, max_tokens: 8, messages: [{ role: 'user', content: 'price me' }], ...body }),
    });
    // The first request: the engine has measured no throughput, yet the cost is known.
    const r = await post({});
    assert.equal(r.status, 200);
    const raw = await r.text();
    const { timings } = JSON.parse(raw);
    for (const k of ['queue_ms', 'prefill_ms', 'decode_ms', 'engine_ms', 'ttft_ms']) assert.equal(typeof timings[k], 'number', k);
    assert.ok(timings.engine_ms > 0);
    assert.ok(Math.abs(timings.prefill_ms + timings.decode_ms - timings.engine_ms) <= 0.0015, 'engine = prefill + decode');
    const header = r.headers.get('x-stratus-cost-usd');
    assert.match(header, /^\d+\.\d{8}$/, `a numeric cost, got ${header}`);
    assert.ok(Math.abs(Number(header) - engineCost(timings)) <= 1e-8, `${header} vs ${engineCost(timings)} from ${timings.engine_ms} ms`);
    assert.equal(noisyNumber(raw), null, `no 17-digit noise in ${raw}`);
    const id = r.headers.get('x-request-id');
    const log = await g.waitForLog((l) => l.event === 'request' && l.id === id);
    const near = (a, b) => Math.abs(a - b) <= b * 1e-9; // the log prints 10 significant digits
    assert.ok(near(log.cost_usd, engineCost(timings)), `logged ${log.cost_usd}`);
    // The ledger row (sqlite next to the config) carries the same cost.
    const db = join(dirname(g.file), 'stratus.db');
    const row = await waitFor(() => {
      const out = execFileSync('sqlite3', ['-json', db, `SELECT cost_usd FROM requests WHERE request_id = '${id}'`], { encoding: 'utf8' });
      return out.trim() ? JSON.parse(out)[0] : null;
    }, { what: 'the ledger row' });
    assert.ok(near(row.cost_usd, engineCost(timings)), `ledger ${row.cost_usd}`);

    // A stream with include_usage: the usage chunk carries the engine's timings and the cost.
    const s = await post({ stream: true, stream_options: { include_usage: true } });
    const text = await s.text();
    assert.equal(noisyNumber(text), null, `no 17-digit noise in ${text}`);
    const last = text.split('\n\n').map((e) => e.replace(/^data: /, '')).filter((e) => e.startsWith('{'))
      .map((e) => JSON.parse(e)).filter((c) => c.usage).pop();
    assert.ok(last?.timings, `timings in the usage chunk: ${text}`);
    assert.ok(last.timings.engine_ms > 0);
    assert.ok(Math.abs(last.usage.cost_usd - engineCost(last.timings)) <= 1e-8,
      `${last.usage.cost_usd} vs ${engineCost(last.timings)} from ${last.timings.engine_ms} ms`);

    // Embeddings report their engine time and are priced by it too.
    const e = await fetch(`${g.baseURL}/v1/embeddings`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', input: 'embed me', encoding_format: 'float' }),
    });
    const eraw = await e.text();
    const emb = JSON.parse(eraw);
    assert.ok(emb.timings.engine_ms > 0);
    assert.ok(Math.abs(Number(e.headers.get('x-stratus-cost-usd')) - engineCost(emb.timings)) <= 1e-8);
    assert.equal(noisyNumber(eraw.replace(/"embedding":\[[^\]]*\]/g, '')), null, `timings without noise: ${emb.timings}`);
    // The vector's floats at 15 significant digits at most, not jansson's default 17.
    const digits = (n) => n.replace(/e.*$/i, '').replace(/\D/g, '').replace(/^0+/, '').length;
    const long = (eraw.match(/-?\d+\.\d+(?:e[-+]?\d+)?/gi) ?? []).filter((n) => digits(n) > 15);
    assert.deepEqual(long, [], 'embedding floats print without 17-digit noise');
  } finally {
    await g.stop();
  }
});
