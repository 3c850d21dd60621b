// The OpenAI-compatible surface through the official `openai` SDK and raw HTTP: answers,
// streams, usage handling, headers, request rewriting, pass-through endpoints.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor } from './lib/gateway.mjs';

let fake, gw, client;
const SECRET = `sk-test-${Math.random().toString(36).slice(2)}`;

before(async () => {
  fake = await startFake();
  gw = await startGateway(config({
    backends: [{ name: 'up', url: fake.url, api_key: 'env:UP_KEY' }],
    models: [
      { name: 'chat', targets: [{ backend: 'up', model: 'ok' }] },
      { name: 'echo', targets: [{ backend: 'up', model: 'echo' }] },
      { name: 'long', targets: [{ backend: 'up', model: 'stream-20' }] },
      { name: 'slow', targets: [{ backend: 'up', model: 'slow-stream' }] },
    ],
  }), { env: { UP_KEY: SECRET } });
  client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'client-key', maxRetries: 0 });
});

after(async () => {
  await gw?.stop();
  await fake?.close();
});

test('GET /health answers ok', async () => {
  const res = await fetch(`${gw.baseURL}/health`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: 'ok' });
  assert.match(res.headers.get('x-request-id'), /^req_[0-9a-f]{16}$/);
});

test('GET /ready is 200 when every backend is reachable', async () => {
  // The first probe runs at start; wait for its verdict rather than racing it.
  const res = await waitFor(async () => { const r = await fetch(`${gw.baseURL}/ready`); return r.status === 200 ? r : null; },
    { what: '/ready to turn 200' });
  const body = await res.json();
  assert.deepEqual(body.backends, [{ name: 'up', ready: true }]);
  assert.equal(body.status, 'ready');
  assert.deepEqual(body.models.map((m) => [m.name, m.ready, m.usable_targets]),
    [['chat', true, 1], ['echo', true, 1], ['long', true, 1], ['slow', true, 1]]);
});

test('GET /v1/models lists the configured model names', async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ['chat', 'echo', 'long', 'slow']);
  assert.equal(list.data[0].object, 'model');
});

test('chat completion through the SDK: answer, usage, rewritten model, upstream key, headers', async () => {
  const before = fake.requests.length;
  const { data, response } = await client.chat.completions
    .create({ model: 'echo', messages: [{ role: 'user', content: 'héllo wörld' }] })
    .withResponse();
  assert.equal(data.choices[0].message.content, 'héllo wörld');
  assert.deepEqual(data.usage, { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 });
  assert.equal(response.headers.get('x-stratus-backend'), 'up');
  assert.equal(response.headers.get('x-stratus-model'), 'echo');
  assert.match(response.headers.get('x-request-id'), /^req_/);
  const up = fake.requests[before];
  assert.equal(up.body.model, 'echo');
  assert.equal(up.headers.authorization, `Bearer ${SECRET}`);
  assert.equal(up.body.stream_options, undefined, 'non-stream requests are not given stream_options');
  const log = await gw.waitForLog((l) => l.event === 'request' && l.id === response.headers.get('x-request-id'));
  assert.equal(log.status, 200);
  assert.equal(log.backend, 'up');
  assert.equal(log.total_tokens, 16);
  assert.equal(log.model, 'echo');
});

test('a client x-request-id is echoed back and logged', async () => {
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'my-trace-42' },
    body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-request-id'), 'my-trace-42');
  await gw.waitForLog((l) => l.event === 'request' && l.id === 'my-trace-42');
});

test('streaming through the SDK: all chunks in order, usage chunk stripped when not asked for', async () => {
  const before = fake.requests.length;
  const stream = await client.chat.completions.create({
    model: 'long', stream: true, messages: [{ role: 'user', content: 'count' }],
  });
  const parts = [];
  let sawUsage = false;
  for await (const c of stream) {
    if (c.usage) sawUsage = true;
    if (c.choices.length === 0) sawUsage = true;
    parts.push(c.choices[0]?.delta?.content ?? '');
  }
  assert.equal(parts.join(''), Array.from({ length: 20 }, (_, i) => `tok${i} `).join(''));
  assert.equal(sawUsage, false, 'the gateway-requested usage chunk must not reach this client');
  const up = fake.requests[before];
  assert.equal(up.body.stream_options.include_usage, true, 'the gateway asks upstream for usage');
  const log = await gw.waitForLog((l) => l.event === 'request' && l.stream === true && l.model === 'long');
  assert.equal(log.completion_tokens, 20, 'usage learned from the stripped chunk');
});

test('streaming with include_usage keeps the usage chunk for the client', async () => {
  const stream = await client.chat.completions.create({
    model: 'chat', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'x' }],
  });
  let usage = null;
  for await (const c of stream) if (c.usage) usage = c.usage;
  assert.deepEqual(usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14, cost_usd: null }); // no known price for "ok"
});

test('stream chunks are forwarded as they arrive, not buffered', async () => {
  const ac = new AbortController();
  const t0 = Date.now();
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', signal: ac.signal,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'x' }] }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let text = '';
  while ((text.match(/tok/g) || []).length < 3) {
    const { value, done } = await reader.read();
    assert.equal(done, false);
    text += dec.decode(value);
  }
  // The upstream sends a chunk every 50 ms for a minute; three chunks in hand long before
  // the end proves chunk-by-chunk forwarding.
  assert.ok(Date.now() - t0 < 5000, `first chunks took ${Date.now() - t0} ms`);
  ac.abort();
});

test('completions and embeddings pass through to the backend', async () => {
  const c = await client.completions.create({ model: 'chat', prompt: 'abc' });
  assert.equal(c.choices[0].text, 'completed:abc');
  const e = await client.embeddings.create({ model: 'chat', input: ['a', 'b'] });
  assert.equal(e.data.length, 2);
  assert.deepEqual(e.data[1].embedding, [0.1, 0.2, 0.3]);
  const ups = fake.requests.slice(-2);
  assert.equal(ups[0].path, '/v1/completions');
  assert.equal(ups[1].path, '/v1/embeddings');
  assert.equal(ups[1].body.model, 'ok');
});

test('several requests reuse one keep-alive connection', async () => {
  const net = await import('node:net');
  const sock = net.connect(gw.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const body = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'k' }] });
  let received = '';
  sock.on('data', (d) => { received += d; });
  for (let i = 0; i < 3; i++) {
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }
  const deadline = Date.now() + 5000;
  while ((received.match(/HTTP\/1\.1 200/g) || []).length < 3 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal((received.match(/HTTP\/1\.1 200/g) || []).length, 3, received);
  assert.equal((received.match(/Hello from the fake/g) || []).length, 3);
  sock.destroy();
});
