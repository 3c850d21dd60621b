// route: priority — ordered failover on connect errors, timeouts, 429 and 5xx while nothing
// was sent; 4xx pass through; all failed → 502/504 with every attempt summarised; a stream
// that breaks after it began ends with an SSE error event, never a silent clean end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, closedPort, SCALE } from './lib/gateway.mjs';

let a, b, gw, client;
const dead = `http://127.0.0.1:${closedPort}/v1`;

before(async () => {
  a = await startFake();
  b = await startFake();
  gw = await startGateway(config({
    backends: [
      { name: 'a', url: a.url },
      { name: 'b', url: b.url },
      { name: 'dead', url: dead },
      { name: 'slow', url: a.url, timeout_ms: Math.round(400 * SCALE) },
    ],
    models: [
      { name: 'after-500', targets: [{ backend: 'a', model: 'fail-500' }, { backend: 'b', model: 'ok' }] },
      { name: 'after-429', targets: [{ backend: 'a', model: 'fail-429' }, { backend: 'b', model: 'ok' }] },
      { name: 'after-dead', targets: [{ backend: 'dead', model: 'ok' }, { backend: 'b', model: 'ok' }] },
      { name: 'after-hang', targets: [{ backend: 'slow', model: 'hang' }, { backend: 'b', model: 'ok' }] },
      { name: 'after-garbled', targets: [{ backend: 'a', model: 'garbled' }, { backend: 'b', model: 'ok' }] },
      { name: 'bad-request', targets: [{ backend: 'a', model: 'fail-400' }, { backend: 'b', model: 'ok' }] },
      { name: 'all-fail', targets: [{ backend: 'a', model: 'fail-500' }, { backend: 'dead', model: 'x' }, { backend: 'b', model: 'fail-503' }] },
      { name: 'all-timeout', targets: [{ backend: 'slow', model: 'hang' }] },
      { name: 'reset', targets: [{ backend: 'a', model: 'reset-mid-stream' }, { backend: 'b', model: 'ok' }] },
    ],
  }));
  client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'x', maxRetries: 0 });
});

after(async () => {
  await gw?.stop();
  await a?.close();
  await b?.close();
});

async function chat(model, extra = {}) {
  return client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }).withResponse();
}

for (const [model, why] of [
  ['after-500', 'a 500'], ['after-429', 'a 429 with Retry-After'], ['after-dead', 'a refused connection'],
  ['after-hang', 'a timeout before the first byte'], ['after-garbled', 'a body that is not JSON'],
]) {
  test(`fails over to the next target after ${why}`, async () => {
    const { data, response } = await chat(model);
    assert.equal(data.choices[0].message.content, 'Hello from the fake');
    assert.equal(response.headers.get('x-stratus-backend'), 'b');
    const log = await gw.waitForLog((l) => l.event === 'request' && l.id === response.headers.get('x-request-id'));
    assert.equal(log.attempts, 2);
    assert.equal(log.backend, 'b');
  });
}

test('streams fail over too while nothing was sent', async () => {
  const stream = await client.chat.completions.create({
    model: 'after-500', stream: true, messages: [{ role: 'user', content: 'x' }],
  });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  assert.equal(text, 'tok0 tok1 tok2 ');
});

test('an upstream 400 passes through unchanged, without failover', async () => {
  const before = b.requests.length;
  await assert.rejects(chat('bad-request'), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.error.message, 'bad thing');
    return true;
  });
  assert.equal(b.requests.length, before, 'the second target must not be tried');
});

test('all targets failed → 502 summarising every attempt', async () => {
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'all-fail', messages: [{ role: 'user', content: 'x' }] }),
  });
  assert.equal(res.status, 502);
  const { error } = await res.json();
  assert.equal(error.code, 'upstream_failed');
  assert.equal(error.type, 'upstream_error');
  assert.match(error.message, /all 3 targets failed/);
  assert.deepEqual(error.attempts.map((x) => [x.backend, x.status]), [['a', 500], ['dead', null], ['b', 503]]);
  assert.match(error.attempts[1].error, /connect/);
});

test('all targets timed out → 504', async () => {
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'all-timeout', messages: [{ role: 'user', content: 'x' }] }),
  });
  assert.equal(res.status, 504);
  const { error } = await res.json();
  assert.equal(error.code, 'upstream_timeout');
  assert.match(error.message, /timed out/);
});

test('a stream that breaks mid-way ends with an SSE error event and no [DONE]', async () => {
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'reset', stream: true, messages: [{ role: 'user', content: 'x' }] }),
  });
  assert.equal(res.status, 200);
  const events = (await res.text()).split('\n\n').filter(Boolean);
  const last = events[events.length - 1];
  assert.ok(!events.includes('data: [DONE]'), 'a cut stream must not look complete');
  assert.match(last, /^data: \{"error"/);
  const err = JSON.parse(last.slice(6)).error;
  assert.equal(err.code, 'stream_interrupted');
  assert.ok(events.some((e) => e.includes('tok1')), 'the chunks sent before the break arrive');
  // The SDK surfaces it as an error rather than a normal end.
  const stream = await client.chat.completions.create({ model: 'reset', stream: true, messages: [{ role: 'user', content: 'x' }] });
  await assert.rejects((async () => { for await (const _ of stream); })());
});

test('every target answering 429 → 429 with the soonest Retry-After, not 502', async () => {
  const g = await (await import('./lib/gateway.mjs')).startGateway((await import('./lib/gateway.mjs')).config({
    backends: [{ name: 'a', url: a.url }, { name: 'b', url: b.url }],
    models: [{ name: 'busy', targets: [{ backend: 'a', model: 'fail-429' }, { backend: 'b', model: 'fail-429' }] }],
  }));
  try {
    const res = await fetch(`${g.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'busy', messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '1');
    const { error } = await res.json();
    assert.equal(error.code, 'upstream_rate_limited');
    assert.equal(error.attempts.length, 2);
  } finally {
    await g.stop();
  }
});
