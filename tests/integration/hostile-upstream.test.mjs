// Upstreams that misbehave in ways a gateway must contain: answers too large to hold (one,
// or many at once), credentials refused and echoed back, garbage in the middle of a stream.
// The fake upstream speaks the real wire format and injects each fault (tests/fakes).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, readSSE, waitFor } from './lib/gateway.mjs';

const SECRET = 'sk-upstream-SECRET-0123456789abcdef';
let fake, gw;

before(async () => {
  fake = await startFake();
  gw = await startGateway(config({
    backends: [{ name: 'up', url: fake.url, api_key: 'env:HOSTILE_UP_KEY' }],
    models: [
      { name: 'too-big', retry: '{ retries: 2, backoff_ms: 1 }', targets: [{ backend: 'up', model: 'big-3' }, { backend: 'up', model: 'big-3' }] },
      { name: 'held', targets: [{ backend: 'up', model: 'big-1-pause-1500' }] },
      { name: 'small', targets: [{ backend: 'up', model: 'ok' }] },
      { name: 'auth-401', retry: '{ retries: 1, backoff_ms: 1 }', targets: [{ backend: 'up', model: 'fail-401-echo' }] },
      { name: 'auth-403', targets: [{ backend: 'up', model: 'fail-403-echo' }] },
      { name: 'auth-then-ok', targets: [{ backend: 'up', model: 'fail-401-echo' }, { backend: 'up', model: 'ok' }] },
      { name: 'echo-400', targets: [{ backend: 'up', model: 'fail-400-echo' }] },
      { name: 'garbage', targets: [{ backend: 'up', model: 'garbage-mid-stream' }] },
    ],
    extra: 'limits: { max_response_bytes: 2097152, max_buffered_bytes: 2621440 }',
  }), { env: { HOSTILE_UP_KEY: SECRET } });
});

after(async () => {
  await gw?.stop();
  await fake?.close();
});

const post = (model, extra = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }),
});
const sent = (model) => fake.requests.filter((r) => r.body?.model === model).length;

test('an answer over limits.max_response_bytes is a 502 naming the limit, fetched once: no failover, no retry', async () => {
  const before = sent('big-3');
  const r = await post('too-big');
  assert.equal(r.status, 502);
  const { error } = await r.json();
  assert.equal(error.code, 'upstream_response_too_large');
  assert.match(error.message, /backend 'up' answered more than limits\.max_response_bytes \(2097152 bytes\)/);
  assert.equal(sent('big-3') - before, 1, 'the 3 MiB answer was downloaded once');
});

test('answers held at once stay within limits.max_buffered_bytes: the overflow gets 503 + Retry-After, then it recovers', async () => {
  // Each answer is ~1 MiB and held for 1.5 s; the budget is 2.5 MiB, so of three at once,
  // at most two can be held.
  const answers = await Promise.all([post('held'), post('held'), post('held')]);
  const statuses = answers.map((a) => a.status).sort();
  assert.deepEqual(statuses, [200, 200, 503]);
  const refused = answers.find((a) => a.status === 503);
  assert.equal(refused.headers.get('retry-after'), '1');
  const { error } = await refused.json();
  assert.equal(error.code, 'gateway_overloaded');
  assert.match(error.message, /limits\.max_buffered_bytes = 2621440 bytes/);
  for (const a of answers.filter((x) => x.status === 200)) {
    const j = await a.json();
    assert.ok(j.choices[0].message.content.length >= 1 << 20);
  }
  // The budget was given back: the same request fits again.
  const again = await post('held');
  assert.equal(again.status, 200);
  await again.arrayBuffer();
  assert.equal((await post('small')).status, 200);
});

test('an upstream 401 is a 502 upstream_auth_failed naming the backend; its body (our key) is never repeated', async () => {
  const client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'client-key', maxRetries: 0 });
  for (const model of ['auth-401', 'auth-403']) {
    const err = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    assert.equal(err.status, 502, `${model}: the client's own key is not what failed`);
    assert.equal(err.error.code, 'upstream_auth_failed');
    assert.match(err.error.message, /backend 'up' refused the gateway's credentials \(HTTP 40[13]\)/);
    assert.doesNotMatch(JSON.stringify(err.error), /SECRET|Incorrect API key/);
  }
  await waitFor(() => gw.logs.filter((l) => l.event === 'request' && l.model?.startsWith('auth-')).length >= 2,
    { what: 'the request log lines' });
  assert.ok(!gw.stderr.includes(SECRET), 'the upstream key never reaches the log');
});

test('an upstream auth failure fails over to the next target', async () => {
  const r = await post('auth-then-ok');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('x-stratus-route'), /after 1 failed attempt/);
});

test('configured secrets are scrubbed from upstream text passed to the client and the log', async () => {
  const r = await post('echo-400');
  assert.equal(r.status, 400); // a 400 is the request's fault: it passes through
  const text = await r.text();
  assert.ok(!text.includes(SECRET), text);
  assert.match(text, /Incorrect API key provided: Bearer \*{10,}/);
  assert.doesNotThrow(() => JSON.parse(text), 'scrubbing keeps the JSON intact');
  await waitFor(() => gw.logs.find((l) => l.event === 'request' && l.model === 'echo-400'), { what: 'its log line' });
  assert.ok(!gw.stderr.includes(SECRET));
});

test('a garbage event mid-stream ends the stream with stream_interrupted; the garbage is not forwarded', async () => {
  const r = await post('garbage', { stream: true });
  assert.equal(r.status, 200);
  const events = await readSSE(r);
  assert.ok(!events.some((e) => e.includes('oops')), 'the garbage never reaches the client');
  assert.ok(!events.includes('[DONE]'));
  const last = JSON.parse(events.at(-1));
  assert.equal(last.error.code, 'stream_interrupted');
  assert.match(last.error.message, /sent an event that is not a JSON object/);
  // What came before the garbage was delivered intact.
  assert.ok(events.slice(0, -1).every((e) => JSON.parse(e).object === 'chat.completion.chunk'));
});
