// The exact response cache (#14 item 1): a repeated deterministic request is answered
// without a target (x-stratus-cache: hit, cost 0, saved cost in the ledger); anything that
// changes the answer misses; sampled requests are not cached by default; bypass headers;
// TTL; the byte bound evicts; streams replay byte for byte; per-key isolation; failed
// answers are never kept; entries are shared through Redis between two gateways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config } from './lib/gateway.mjs';
import { startRedis } from './lib/services.mjs';
import { samples, value } from './lib/prometheus.mjs';

const run = promisify(execFile);
let up;
before(async () => { up = await startFake(); });
after(async () => { await up?.close(); });

const models = (fields = {}) => [
  { name: 'chat', fields, targets: [{ backend: 'up', model: 'ok', price: { input: 2, output: 10 } }] },
  { name: 'streamy', targets: [{ backend: 'up', model: 'stream-5', price: { input: 2, output: 10 } }] },
  { name: 'nocache', fields: { cache: 'false' }, targets: [{ backend: 'up', model: 'ok' }] },
  { name: 'broken', targets: [{ backend: 'up', model: 'fail-500' }] },
];
const yaml = (extra = 'cache: { ttl_s: 60 }', fields) =>
  config({ backends: [{ name: 'up', url: up.url }], models: models(fields), extra });
const chat = (gw, body = {}, headers = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify({ model: 'chat', temperature: 0, messages: [{ role: 'user', content: 'hello' }], ...body }),
});
const upstreamCalls = () => up.requests.filter((r) => r.path === '/v1/chat/completions').length;
const rows = async (gw, sql) => {
  const { stdout } = await run('sqlite3', ['-json', join(dirname(gw.file), 'stratus.db'), sql]);
  return stdout.trim() ? JSON.parse(stdout) : [];
};

test('a repeated deterministic request is a hit: same body, no upstream call, cost 0, saved cost in the ledger', async () => {
  const gw = await startGateway(yaml());
  try {
    const before = upstreamCalls();
    const first = await chat(gw);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('x-stratus-cache'), 'miss');
    const firstBody = await first.text();
    const cost = Number(first.headers.get('x-stratus-cost-usd'));
    assert.ok(cost > 0);
    const second = await chat(gw);
    assert.equal(second.headers.get('x-stratus-cache'), 'hit');
    assert.equal(await second.text(), firstBody, 'the same answer');
    assert.equal(Number(second.headers.get('x-stratus-cost-usd')), 0);
    assert.match(second.headers.get('x-stratus-route'), /^cache; cache hit, made \d+ s ago by up/);
    assert.equal(upstreamCalls() - before, 1, 'the hit asked no target');
    // A seed makes a sampled request repeatable too.
    assert.equal((await chat(gw, { temperature: 0.9, seed: 7 })).headers.get('x-stratus-cache'), 'miss');
    assert.equal((await chat(gw, { temperature: 0.9, seed: 7 })).headers.get('x-stratus-cache'), 'hit');
    await new Promise((r) => setTimeout(r, 300));
    const ledger = await rows(gw, "select cache, cost_usd, saved_usd, backend from requests where model = 'chat' order by id");
    assert.deepEqual(ledger.map((r) => r.cache), ['miss', 'hit', 'miss', 'hit']);
    assert.equal(ledger[1].cost_usd, 0);
    assert.ok(Math.abs(ledger[1].saved_usd - cost) < 1e-12, 'the hit records what it saved');
    assert.equal(ledger[0].saved_usd, null);
    assert.equal(ledger[1].backend, '', 'a hit asked no backend');
    const m = samples(await (await fetch(`${gw.baseURL}/metrics`)).text());
    assert.equal(value(m, 'stratus_cache_requests_total', { model: 'chat', result: 'hit' }), 2);
    assert.equal(value(m, 'stratus_cache_requests_total', { model: 'chat', result: 'miss' }), 2);
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('anything that changes the answer misses; sampled requests, cache: false and bypass headers skip the cache', async () => {
  const gw = await startGateway(yaml());
  try {
    await chat(gw);
    for (const change of [{ max_tokens: 5 }, { messages: [{ role: 'user', content: 'hello!' }] }, { top_p: 0.5 },
      { tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }] }])
      assert.equal((await chat(gw, change)).headers.get('x-stratus-cache'), 'miss', JSON.stringify(change));
    // What does not change the answer does not change the key.
    assert.equal((await chat(gw, { user: 'someone' })).headers.get('x-stratus-cache'), 'hit');
    const before = upstreamCalls();
    const sampled = await chat(gw, { temperature: 0.7 });
    assert.equal(sampled.headers.get('x-stratus-cache'), null, 'a sampled request is not cacheable by default');
    await chat(gw, { temperature: 0.7 });
    assert.equal(upstreamCalls() - before, 2);
    const off = await chat(gw, { model: 'nocache' });
    assert.equal(off.headers.get('x-stratus-cache'), null);
    for (const headers of [{ 'x-stratus-cache': 'bypass' }, { 'cache-control': 'no-cache' }]) {
      const n = upstreamCalls();
      const res = await chat(gw, {}, headers);
      assert.equal(res.headers.get('x-stratus-cache'), 'bypass');
      assert.equal(upstreamCalls() - n, 1, 'bypass asks the target');
    }
    // A failed answer is never kept.
    for (let i = 0; i < 2; i++) {
      const res = await chat(gw, { model: 'broken' });
      assert.equal(res.status, 502);
      assert.equal(res.headers.get('x-stratus-cache'), 'miss');
    }
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('streams replay byte for byte, usage and framing included', async () => {
  const gw = await startGateway(yaml());
  try {
    const body = { model: 'streamy', stream: true, stream_options: { include_usage: true } };
    const first = await chat(gw, body);
    assert.equal(first.headers.get('x-stratus-cache'), 'miss');
    const original = await first.text();
    const second = await chat(gw, body);
    assert.equal(second.headers.get('x-stratus-cache'), 'hit');
    assert.equal(second.headers.get('content-type'), first.headers.get('content-type'));
    const replay = await second.text();
    // Only the cost in the usage chunk differs: a hit costs 0.
    assert.equal(replay.replace(/"cost_usd":[0-9.e-]+/, ''), original.replace(/"cost_usd":[0-9.e-]+/, ''));
    assert.match(replay, /"cost_usd":0\.00000000/);
    assert.ok(replay.endsWith('data: [DONE]\n\n'));
    // A stream and a whole answer are different entries; a client without include_usage
    // gets the replay without the usage chunk.
    const plain = await chat(gw, { model: 'streamy', stream: true });
    assert.equal(plain.headers.get('x-stratus-cache'), 'hit');
    assert.doesNotMatch(await plain.text(), /"usage":\{/, "no usage chunk for a client that did not ask");
    assert.equal((await chat(gw, { model: 'streamy' })).headers.get('x-stratus-cache'), 'miss');
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('entries expire after ttl_s and the byte bound evicts the least recently used', async () => {
  const gw = await startGateway(yaml('cache: { ttl_s: 1, max_bytes: 4000, max_entry_bytes: 2000 }'));
  try {
    assert.equal((await chat(gw)).headers.get('x-stratus-cache'), 'miss');
    assert.equal((await chat(gw)).headers.get('x-stratus-cache'), 'hit');
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal((await chat(gw)).headers.get('x-stratus-cache'), 'miss', 'expired');
    // ~700 bytes each: the first of ten distinct entries is long gone.
    for (let i = 0; i < 10; i++) await chat(gw, { messages: [{ role: 'user', content: `question ${i}` }] });
    assert.equal((await chat(gw, { messages: [{ role: 'user', content: 'question 9' }] })).headers.get('x-stratus-cache'), 'hit');
    assert.equal((await chat(gw, { messages: [{ role: 'user', content: 'question 0' }] })).headers.get('x-stratus-cache'), 'miss');
    const m = samples(await (await fetch(`${gw.baseURL}/metrics`)).text());
    assert.ok(value(m, 'stratus_cache_evictions_total') > 0);
    assert.ok(value(m, 'stratus_cache_bytes') <= 4000, 'never above max_bytes');
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('scope: key keeps entries apart per virtual key', async () => {
  const MK = 'cache-master-key-0123456789';
  const gw = await startGateway(yaml('auth: { master_key: env:MK, refresh_ms: 100 }\ncache: { scope: key }'), { env: { MK } });
  try {
    const make = async (name) => {
      const res = await fetch(`${gw.baseURL}/admin/keys`, {
        method: 'POST', headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
      });
      return (await res.json()).key;
    };
    const [a, b] = [await make('a'), await make('b')];
    await new Promise((r) => setTimeout(r, 300));
    const as = (key) => chat(gw, {}, { authorization: `Bearer ${key}` });
    assert.equal((await as(a)).headers.get('x-stratus-cache'), 'miss');
    assert.equal((await as(a)).headers.get('x-stratus-cache'), 'hit');
    assert.equal((await as(b)).headers.get('x-stratus-cache'), 'miss', "another key does not see a's entry");
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('with store.redis, two gateways share entries', async () => {
  const redis = await startRedis();
  const extra = `cache: { ttl_s: 60 }\nstore: { redis: "${redis.url}" }`;
  const one = await startGateway(yaml(extra));
  const two = await startGateway(yaml(extra));
  try {
    const before = upstreamCalls();
    const body = { messages: [{ role: 'user', content: 'shared question' }] };
    const first = await chat(one, body);
    assert.equal(first.headers.get('x-stratus-cache'), 'miss');
    const text = await first.text();
    await new Promise((r) => setTimeout(r, 200)); // the SET is not waited for
    const second = await chat(two, body);
    assert.equal(second.headers.get('x-stratus-cache'), 'hit', 'made by the other gateway');
    assert.equal(await second.text(), text);
    assert.match(second.headers.get('x-stratus-route'), /cache hit \(shared\)/);
    assert.equal(upstreamCalls() - before, 1);
    const m = samples(await (await fetch(`${two.baseURL}/metrics`)).text());
    assert.equal(value(m, 'stratus_cache_shared_hits_total'), 1);
    // Kept locally now: a third request is a local hit even with Redis gone.
    await redis.close();
    assert.equal((await chat(two, body)).headers.get('x-stratus-cache'), 'hit');
  } finally {
    assert.equal(await one.stop(), 0);
    assert.equal(await two.stop(), 0);
    await redis.close();
  }
});
