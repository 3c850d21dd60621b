// Bad input gets the right status and an OpenAI-style error body naming the problem, and the
// gateway keeps serving afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor } from './lib/gateway.mjs';

let fake, gw;

before(async () => {
  fake = await startFake();
  gw = await startGateway(config({
    backends: [{ name: 'up', url: fake.url }],
    models: [{ name: 'chat', targets: [{ backend: 'up', model: 'ok' }] }],
    extra: 'limits: { max_body_bytes: 2048, max_header_bytes: 1024, header_timeout_ms: 500, body_timeout_ms: 500 }',
  }));
});

after(async () => {
  await gw?.stop();
  await fake?.close();
});

async function post(body, { path = '/v1/chat/completions', headers = {}, method = 'POST' } = {}) {
  const res = await fetch(`${gw.baseURL}${path}`, {
    method, headers: { 'content-type': 'application/json', ...headers },
    body: method === 'GET' ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* asserted below */ }
  return { status: res.status, headers: res.headers, json, text };
}

function assertError(r, status, code, param) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.json && r.json.error, `not an OpenAI error body: ${r.text}`);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.message.length > 0);
  assert.equal(typeof r.json.error.type, 'string');
  assert.equal(r.json.error.code, code);
  if (param !== undefined) assert.equal(r.json.error.param, param);
  assert.ok(r.headers.get('x-request-id'));
}

// Raw HTTP over a socket: for requests fetch refuses to send.
function raw(text, { wait = 3000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(gw.port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => { out += d; });
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out));
    s.write(text);
    setTimeout(() => { s.destroy(); }, wait);
  });
}

test('malformed JSON → 400 invalid_json', async () => {
  const r = await post('{"model": "chat", "messages": [');
  assertError(r, 400, 'invalid_json');
  assert.match(r.json.error.message, /not valid JSON/);
});

test('a body that is not an object → 400 invalid_json', async () => {
  assertError(await post('[1,2,3]'), 400, 'invalid_json');
});

test('wrong field types → 400 naming the field', async () => {
  let r = await post({ model: 42, messages: [{ role: 'user', content: 'x' }] });
  assertError(r, 400, 'invalid_type', 'model');
  assert.match(r.json.error.message, /"model" must be a string, got integer/);
  r = await post({ model: 'chat', messages: 'hello' });
  assertError(r, 400, 'invalid_type', 'messages');
  assert.match(r.json.error.message, /"messages" must be an array/);
  r = await post({ model: 'chat', messages: [{ role: 'user', content: 'x' }], stream: 'yes' });
  assertError(r, 400, 'invalid_type', 'stream');
  r = await post({ model: 'chat', messages: [{ role: 'user', content: 'x' }], temperature: 'hot' });
  assertError(r, 400, 'invalid_type', 'temperature');
  r = await post({ model: 'chat', messages: [{ content: 'no role' }] });
  assertError(r, 400, 'invalid_type', 'messages');
  assert.match(r.json.error.message, /messages\[0\]\.role/);
});

test('missing required fields → 400 missing_field', async () => {
  assertError(await post({ messages: [{ role: 'user', content: 'x' }] }), 400, 'missing_field', 'model');
  assertError(await post({ model: 'chat' }), 400, 'missing_field', 'messages');
  assertError(await post({ model: 'chat' }, { path: '/v1/embeddings' }), 400, 'missing_field', 'input');
});

test('unknown model → 404 model_not_found naming it', async () => {
  const r = await post({ model: 'gpt-nope', messages: [{ role: 'user', content: 'x' }] });
  assertError(r, 404, 'model_not_found', 'model');
  assert.match(r.json.error.message, /gpt-nope/);
});

test('wrong method → 405 with Allow', async () => {
  const r = await post(null, { method: 'GET' });
  assertError(r, 405, 'method_not_allowed');
  assert.equal(r.headers.get('allow'), 'POST');
  const r2 = await post({}, { path: '/health', method: 'DELETE' });
  assertError(r2, 405, 'method_not_allowed');
  assert.equal(r2.headers.get('allow'), 'GET, HEAD'); // HEAD is served wherever GET is
});

test('unknown path → 404 not_found', async () => {
  const r = await post({}, { path: '/v2/whatever' });
  assertError(r, 404, 'not_found');
  assert.match(r.json.error.message, /\/v2\/whatever/);
});

test('body over max_body_bytes → 413 before the body is read', async () => {
  const big = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x'.repeat(5000) }] });
  const r = await post(big);
  assertError(r, 413, 'body_too_large');
  assert.match(r.json.error.message, /2048/);
  // Announced but never sent: the 413 comes from Content-Length alone.
  const out = await raw('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 413/);
  assert.match(out, /"code":"body_too_large"/);
});

test('chunked body over the limit → 413', async () => {
  const chunk = 'x'.repeat(1500);
  const out = await raw('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
    `${chunk.length.toString(16)}\r\n${chunk}\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`);
  assert.match(out, /^HTTP\/1\.1 413/);
});

test('headers over max_header_bytes → 431', async () => {
  const out = await raw(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(4000)}\r\n\r\n`);
  assert.match(out, /^HTTP\/1\.1 431/);
  assert.match(out, /"code":"headers_too_large"/);
});

test('garbage instead of HTTP → 400 bad_request', async () => {
  const out = await raw('HELLO THERE\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 400/);
  assert.match(out, /"code":"bad_request"/);
});

test('a client trickling its request head is cut off (slowloris)', async () => {
  const t0 = Date.now();
  const s = net.connect(gw.port, '127.0.0.1');
  let out = '';
  s.on('data', (d) => { out += d; });
  const closed = new Promise((r) => s.on('close', r));
  s.write('GET /health HTTP/1.1\r\n');
  const drip = setInterval(() => { if (!s.destroyed) s.write('X-A: b\r\n'); }, 100);
  await closed;
  clearInterval(drip);
  const took = Date.now() - t0;
  assert.match(out, /^HTTP\/1\.1 408/);
  assert.match(out, /"code":"request_timeout"/);
  assert.ok(took < 5000, `connection held for ${took} ms`);
});

test('a client that stops sending its body gets 408', async () => {
  const out = await raw('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mo', { wait: 5000 });
  assert.match(out, /^HTTP\/1\.1 408/);
});

test('the gateway still serves after all of the above', async () => {
  const r = await post({ model: 'chat', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(r.status, 200);
  const log = await waitFor(() => gw.logs.filter((l) => l.event === 'request' && l.status === 404).length >= 1);
  assert.ok(log);
});
