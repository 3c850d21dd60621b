// HTTP/2 on the gateway's listener (#15): h2c with prior knowledge, as the AWS SDK's
// NodeHttp2Handler speaks to an http:// endpoint. Node's own node:http2 client drives the real
// binary; raw sockets send what no polite client would (garbage after the preface, stream and
// reset floods). HTTP/1.1 and the OpenAI SDK keep working on the same port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import http2 from 'node:http2';
import net from 'node:net';
import { resolve } from 'node:path';
import OpenAI from 'openai';
import { NodeHttp2Handler } from '@smithy/node-http-handler';
import { HttpRequest } from '@smithy/protocol-http';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, waitFor, SCALE } from './lib/gateway.mjs';

const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
const MAX_BODY = 200000;
const { NGHTTP2_CANCEL } = http2.constants;
let fake, gw;

function gatewayConfig(fakeUrl) {
  return `log: { requests: true }
limits: { max_body_bytes: ${MAX_BODY} }
backends:
  - { name: up, type: openai, base_url: "${fakeUrl}", timeout_ms: ${Math.round(20000 * SCALE)} }
  - { name: local, type: local, model_path: "${MODEL}", parallel: 2, threads: 2, ctx_size: 512 }
models:
  - { name: chat, retry: { retries: 0 }, targets: [ { backend: up, model: ok } ] }
  - { name: twenty, retry: { retries: 0 }, targets: [ { backend: up, model: stream-20 } ] }
  - { name: slow, retry: { retries: 0 }, targets: [ { backend: up, model: slow-stream } ] }
  - { name: big, retry: { retries: 0 }, targets: [ { backend: up, model: big-stream } ] }
  - { name: tiny, targets: [ { backend: local, model: tiny } ] }
`;
}

before(async () => {
  fake = await startFake();
  gw = await startGateway(gatewayConfig(fake.url));
  await waitFor(async () => {
    const j = await (await fetch(`${gw.baseURL}/ready`)).json();
    return j.backends.every((b) => b.ready || b.name === 'up');
  }, { timeout: 30000, what: 'the local model to load' });
});

after(async () => {
  await fake?.close();
  // Exit 0 after all of the above: no crash, and under ASan no leak (it exits 66 then).
  assert.equal(await gw?.stop(), 0, gw?.stderr.slice(-3000));
});

async function connect(opts = {}) {
  const session = http2.connect(gw.baseURL, opts);
  session.on('error', () => {}); // asserted through the requests that fail
  await new Promise((res, rej) => { session.once('connect', res); session.once('error', rej); });
  return session;
}

// One request on `session`; resolves with status, headers and the body text.
function request(session, headers, body) {
  return new Promise((res, rej) => {
    const req = session.request(headers);
    let text = '';
    let head;
    req.setEncoding('utf8');
    req.on('response', (h) => { head = h; });
    req.on('data', (d) => { text += d; });
    req.on('end', () => res({ status: head?.[':status'], headers: head, text }));
    req.on('error', rej);
    req.end(body);
  });
}

const chat = (session, model, extra = {}) => request(session,
  { ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' },
  JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }));

const sseContent = (text) => text.split('\n\n').filter((e) => e.startsWith('data: {'))
  .map((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.content ?? '').join('');

test('GET /health and /v1/models over h2c prior knowledge, logged like HTTP/1.1', async () => {
  const s = await connect();
  const h = await request(s, { ':path': '/health' });
  assert.equal(h.status, 200);
  assert.deepEqual(JSON.parse(h.text), { status: 'ok' });
  assert.match(h.headers['x-request-id'], /^req_[0-9a-f]{16}$/);
  assert.equal(h.headers['content-length'], String(h.text.length));
  const m = await request(s, { ':path': '/v1/models', 'x-request-id': 'h2-models-1' });
  assert.equal(m.status, 200);
  assert.deepEqual(JSON.parse(m.text).data.map((d) => d.id), ['chat', 'twenty', 'slow', 'big', 'tiny']);
  assert.equal(m.headers['x-request-id'], 'h2-models-1');
  const line = await gw.waitForLog((l) => l.event === 'request' && l.id === 'h2-models-1');
  assert.equal(line.status, 200);
  assert.equal(line.path, '/v1/models');
  assert.equal(line.protocol, 'HTTP/2');
  // Errors keep their status and JSON body; HEAD answers the head without a body.
  const nf = await request(s, { ':path': '/nope' });
  assert.equal(nf.status, 404);
  assert.equal(JSON.parse(nf.text).error.code, 'not_found');
  const head = await request(s, { ':method': 'HEAD', ':path': '/health' });
  assert.equal(head.status, 200);
  assert.equal(head.text, '');
  assert.equal(head.headers['content-length'], '15');
  s.close();
});

test('chat completions over HTTP/2: JSON and SSE from a fake upstream', async () => {
  const s = await connect();
  const r = await chat(s, 'chat');
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.text).choices[0].message.content, 'Hello from the fake');
  assert.equal(r.headers['x-stratus-backend'], 'up');
  assert.equal(r.headers['x-stratus-model'], 'ok');
  const st = await chat(s, 'twenty', { stream: true });
  assert.equal(st.status, 200);
  assert.match(st.headers['content-type'], /^text\/event-stream/);
  assert.equal(st.headers['content-length'], undefined);
  assert.equal(sseContent(st.text), Array.from({ length: 20 }, (_, i) => `tok${i} `).join(''));
  assert.match(st.text, /data: \[DONE\]\n\n$/);
  s.close();
});

test('chat completions over HTTP/2 against the real local engine, JSON and stream', async () => {
  const s = await connect();
  const ask = { temperature: 0, max_tokens: 8 };
  const r = await chat(s, 'tiny', ask);
  assert.equal(r.status, 200, r.text);
  const j = JSON.parse(r.text);
  assert.equal(r.headers['x-stratus-backend'], 'local');
  assert.ok(j.usage.completion_tokens > 0);
  const st = await chat(s, 'tiny', { ...ask, stream: true });
  assert.equal(st.status, 200);
  assert.match(st.text, /data: \[DONE\]\n\n$/);
  // Same prompt, temperature 0: the stream says what the JSON answer said.
  assert.equal(sseContent(st.text), j.choices[0].message.content);
  s.close();
});

test('150 concurrent streams on one connection (100 at a time, as the server announces)', async () => {
  const s = await connect();
  await waitFor(() => s.remoteSettings?.maxConcurrentStreams === 100, { what: 'the server SETTINGS' });
  const results = await Promise.all(Array.from({ length: 150 }, (_, i) =>
    (i % 2 ? chat(s, 'twenty', { stream: true }) : request(s, { ':path': '/health' }))));
  for (const [i, r] of results.entries()) {
    assert.equal(r.status, 200, `stream ${i}`);
    if (i % 2) assert.match(r.text, /tok19 [\s\S]*data: \[DONE\]\n\n$/, `stream ${i}`);
  }
  s.close();
});

test('a stream its client does not read pauses only its own upstream', async () => {
  const s = await connect();
  s.setLocalWindowSize(64 << 20); // the connection window is not what holds the stream back
  const before = fake.requests.length;
  const big = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
  big.end(JSON.stringify({ model: 'big', stream: true, messages: [{ role: 'user', content: 'x' }] }));
  big.pause(); // read nothing: its window closes after 256 KiB
  const up = await waitFor(() => fake.requests.slice(before).find((r) => r.body?.model === 'big-stream'),
    { what: 'the big upstream request' });
  await waitFor(() => up.progress > 0, { what: 'the big stream to start' });
  // Meanwhile, other streams on the same connection complete.
  for (let i = 0; i < 3; i++) {
    const r = await chat(s, 'twenty', { stream: true });
    assert.equal(r.status, 200);
    assert.match(r.text, /data: \[DONE\]\n\n$/);
  }
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(up.progress < 20000, `the upstream wrote all ${up.progress} chunks for a stream nobody reads`);
  assert.equal(up.done, false);
  // Reading resumes the producer: the whole stream arrives.
  let text = '';
  big.setEncoding('utf8');
  big.on('data', (d) => { text += d; });
  const ended = new Promise((r) => big.on('end', r));
  big.resume();
  await ended;
  assert.equal((text.match(/"content":"\d+:x/g) || []).length, 20000);
  assert.match(text, /data: \[DONE\]\n\n$/);
  s.close();
});

test('RST_STREAM cancels the upstream at once and is logged as 499 client closed', async () => {
  const s = await connect();
  const before = fake.requests.length;
  const req = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json', 'x-request-id': 'h2-rst-1' });
  req.end(JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'x' }] }));
  let chunks = 0;
  await new Promise((r) => req.on('data', () => { if (++chunks === 2) r(); }));
  const up = await waitFor(() => fake.requests.slice(before).find((r) => r.body?.model === 'slow-stream'),
    { what: 'the upstream request' });
  const t0 = Date.now();
  req.close(NGHTTP2_CANCEL);
  await waitFor(() => up.closedEarly, { timeout: 2000, what: 'the upstream socket to close' });
  assert.ok(Date.now() - t0 < 2000 * SCALE);
  const log = await gw.waitForLog((l) => l.event === 'request' && l.id === 'h2-rst-1');
  assert.equal(log.status, 499);
  assert.match(log.error, /client closed/);
  // The connection itself is fine.
  assert.equal((await request(s, { ':path': '/health' })).status, 200);
  s.close();
});

test('closing the connection aborts every stream on it', async () => {
  const s = await connect();
  const before = fake.requests.length;
  for (const id of ['h2-close-1', 'h2-close-2']) {
    const req = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json', 'x-request-id': id });
    req.on('error', () => {});
    req.on('data', () => {});
    req.end(JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'x' }] }));
  }
  const ups = await waitFor(() => {
    const u = fake.requests.slice(before).filter((r) => r.body?.model === 'slow-stream');
    return u.length === 2 ? u : null;
  }, { what: 'both upstream requests' });
  await new Promise((r) => setTimeout(r, 100));
  s.destroy();
  await waitFor(() => ups.every((u) => u.closedEarly), { timeout: 2000, what: 'both upstreams to close' });
  for (const id of ['h2-close-1', 'h2-close-2'])
    assert.equal((await gw.waitForLog((l) => l.event === 'request' && l.id === id)).status, 499);
});

test('an oversized body is refused with 413, announced or not, and the connection lives on', async () => {
  const s = await connect();
  const body = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x'.repeat(MAX_BODY) }] });
  // Without content-length: counted as DATA arrives.
  const r = await request(s, { ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' }, body);
  assert.equal(r.status, 413);
  const e = JSON.parse(r.text).error;
  assert.equal(e.code, 'body_too_large');
  assert.match(e.message, new RegExp(`${MAX_BODY} bytes`));
  // Announced: refused before any of it is read.
  const r2 = await request(s, { ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json', 'content-length': String(body.length) }, body);
  assert.equal(r2.status, 413);
  const logged = await gw.waitForLog((l) => l.event === 'request' && l.status === 413 && l.path === '/v1/chat/completions');
  assert.match(logged.error, /exceeds the limit/);
  assert.equal((await request(s, { ':path': '/health' })).status, 200);
  s.close();
});

test('curl --http2-prior-knowledge: JSON and a streamed chat over HTTP/2', async () => {
  // Asynchronously: the fake upstream answering the chat lives in this process.
  const curl = async (...args) => (await promisify(execFile)('curl', args, { encoding: 'utf8' })).stdout;
  const health = await curl('-sS', '--http2-prior-knowledge', '-w', '\n%{http_version} %{http_code}', `${gw.baseURL}/health`);
  assert.equal(health, '{"status":"ok"}\n2 200');
  const sse = await curl('-sSN', '--http2-prior-knowledge', '-H', 'content-type: application/json',
    '-d', JSON.stringify({ model: 'twenty', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    `${gw.baseURL}/v1/chat/completions`);
  const events = sse.split('\n\n').filter((e) => e.startsWith('data: '));
  assert.equal(events.at(-1), 'data: [DONE]');
  const text = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, Array.from({ length: 20 }, (_, i) => `tok${i} `).join(''));
});

test('HTTP/1.1 and the OpenAI SDK still work on the same port', async () => {
  const r = await fetch(`${gw.baseURL}/health`);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { status: 'ok' });
  const client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'unused', maxRetries: 0 });
  const c = await client.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] },
    { headers: { 'x-request-id': 'h1-chat-1' } });
  assert.equal(c.choices[0].message.content, 'Hello from the fake');
  assert.equal((await gw.waitForLog((l) => l.event === 'request' && l.id === 'h1-chat-1')).protocol, 'HTTP/1.1');
  const stream = await client.chat.completions.create({ model: 'twenty', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  let text = '';
  for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
  assert.equal(text, Array.from({ length: 20 }, (_, i) => `tok${i} `).join(''));
});

test("the AWS SDK's HTTP/2 handler (NodeHttp2Handler, BedrockRuntimeClient's default) gets answers", async () => {
  const handler = new NodeHttp2Handler();
  const send = async (method, path, body) => {
    const { response } = await handler.handle(new HttpRequest({
      protocol: 'http:', hostname: '127.0.0.1', port: gw.port, method, path, body,
      headers: body ? { 'content-type': 'application/json' } : {},
    }));
    let text = '';
    for await (const d of response.body) text += d;
    return { status: response.statusCode, headers: response.headers, text };
  };
  try {
    const h = await send('GET', '/health');
    assert.equal(h.status, 200);
    assert.deepEqual(JSON.parse(h.text), { status: 'ok' });
    const s = await send('POST', '/v1/chat/completions',
      JSON.stringify({ model: 'twenty', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(s.status, 200);
    assert.equal(s.headers['x-stratus-backend'], 'up');
    assert.equal(sseContent(s.text), Array.from({ length: 20 }, (_, i) => `tok${i} `).join(''));
  } finally {
    handler.destroy();
  }
});

// ---- raw frames, for what node:http2 will not send ---------------------------------------

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
function frame(type, flags, stream, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}
// HPACK without Huffman: :method POST (static 3), :scheme http (7), :path and :authority as
// literals with an indexed name (4, 1).
function requestBlock(path) {
  const lit = (idx, v) => Buffer.concat([Buffer.from([0x00 | idx, v.length]), Buffer.from(v)]);
  return Buffer.concat([Buffer.from([0x83, 0x86]), lit(4, path), lit(1, 'x')]);
}
const rst = (id, code) => { const p = Buffer.alloc(4); p.writeUInt32BE(code); return frame(3, 0, id, p); };

// Reads frames from a raw socket until it closes or `ms` pass.
function collectFrames(sock, ms) {
  return new Promise((res) => {
    let buf = Buffer.alloc(0);
    const frames = [];
    const done = () => { clearTimeout(t); res({ frames, closed: sock.destroyed || sock.readableEnded }); };
    const t = setTimeout(done, ms);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        frames.push({ type: buf[3], flags: buf[4], stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) });
        buf = buf.subarray(9 + len);
      }
    });
    sock.on('close', done);
    sock.on('error', () => {});
  });
}

async function rawConnect() {
  const sock = net.connect(gw.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  return sock;
}

test('garbage after the preface ends that connection with GOAWAY, nothing else', async () => {
  const sock = await rawConnect();
  const got = collectFrames(sock, 3000 * SCALE);
  sock.write(Buffer.concat([PREFACE, Buffer.from('\x00\x00\x04\x08\x00\x00\x00\x00\x00 this is not a frame at all, just noise ' + 'z'.repeat(200))]));
  const { frames, closed } = await got;
  assert.ok(closed, 'the server closed the connection');
  const goaway = frames.find((f) => f.type === 7);
  assert.ok(goaway, 'a GOAWAY came first');
  assert.notEqual(goaway.payload.readUInt32BE(4), 0, 'with an error code');
  // Half a preface then a close, and a preface cut short: nothing breaks either.
  const s2 = await rawConnect();
  s2.end(PREFACE.subarray(0, 10));
  const s3 = await rawConnect();
  s3.end(Buffer.concat([PREFACE, frame(4, 0, 0).subarray(0, 5)]));
  const s = await connect();
  assert.equal((await request(s, { ':path': '/health' })).status, 200);
  s.close();
});

test('more than 100 open streams are refused, a reset flood ends the connection', async () => {
  const before = fake.requests.length;
  // 150 requests whose bodies never come: 100 are taken, the rest refused (REFUSED_STREAM).
  const sock = await rawConnect();
  const got = collectFrames(sock, 1500 * SCALE);
  const out = [PREFACE, frame(4, 0, 0)];
  for (let i = 0; i < 150; i++) out.push(frame(1, 0x4, 1 + 2 * i, requestBlock('/v1/chat/completions')));
  sock.write(Buffer.concat(out));
  const { frames } = await got;
  const refused = frames.filter((f) => f.type === 3 && f.payload.readUInt32BE(0) === 7);
  assert.equal(refused.length, 50);
  assert.ok(refused.every((f) => f.stream > 199), 'the first 100 streams were taken');
  sock.destroy();

  // Rapid reset: open a stream and reset it, thousands of times. nghttp2's bucket (200, then
  // 100/s) stops it with GOAWAY long before that, having started no upstream call.
  const s2 = await rawConnect();
  const got2 = collectFrames(s2, 5000 * SCALE);
  const flood = [PREFACE, frame(4, 0, 0)];
  for (let i = 0; i < 5000; i++) {
    const id = 1 + 2 * i;
    flood.push(frame(1, 0x4, id, requestBlock('/v1/chat/completions')), rst(id, 8));
  }
  s2.write(Buffer.concat(flood));
  const { frames: f2, closed } = await got2;
  const goaway = f2.find((f) => f.type === 7);
  assert.ok(goaway, 'GOAWAY');
  assert.notEqual(goaway.payload.readUInt32BE(4), 0, 'with an error code');
  assert.ok(goaway.payload.readUInt32BE(0) < 2 * 1000, 'after a bounded number of streams');
  assert.ok(closed);
  assert.equal(fake.requests.length, before, 'no request body ever completed, so no upstream call');
  const s = await connect();
  assert.equal((await request(s, { ':path': '/health' })).status, 200);
  s.close();
});

test('a request body that never completes gets 408 after body_timeout_ms', async () => {
  const g = await startGateway(`log: { requests: true }\nlimits: { body_timeout_ms: 300 }\nbackends: []\nmodels: []\n`);
  const s = http2.connect(g.baseURL);
  s.on('error', () => {});
  const req = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
  req.write('{"model":');
  const r = await new Promise((res, rej) => {
    let text = '';
    let status;
    req.on('response', (h) => { status = h[':status']; });
    req.setEncoding('utf8');
    req.on('data', (d) => { text += d; });
    req.on('close', () => res({ status, text }));
    req.on('error', rej);
  });
  assert.equal(r.status, 408);
  assert.equal(JSON.parse(r.text).error.code, 'request_timeout');
  s.close();
  await g.stop();
});

test('SIGTERM sends GOAWAY; the stream in flight finishes and the process exits 0', async () => {
  const g = await startGateway(gatewayConfig(fake.url).replace(/  - \{ name: local.*\n/, '').replace(/  - \{ name: tiny.*\n/, ''));
  const s = http2.connect(g.baseURL);
  s.on('error', () => {});
  const goaway = new Promise((r) => s.once('goaway', (code) => r(code)));
  await new Promise((r) => s.once('connect', r));
  const req = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
  req.end(JSON.stringify({ model: 'twenty', stream: true, messages: [{ role: 'user', content: 'x' }] }));
  let text = '';
  req.setEncoding('utf8');
  req.on('data', (d) => { text += d; });
  await new Promise((r) => req.once('data', r));
  g.child.kill('SIGTERM');
  assert.equal(await goaway, 0);
  await new Promise((r) => req.on('end', r));
  assert.match(text, /tok19 [\s\S]*data: \[DONE\]\n\n$/);
  assert.equal(await g.exited, 0);
});
