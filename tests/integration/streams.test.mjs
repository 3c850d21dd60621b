// Streaming under load and client disconnects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor } from './lib/gateway.mjs';

let fake, gw;

before(async () => {
  fake = await startFake();
  gw = await startGateway(config({
    backends: [{ name: 'up', url: fake.url }],
    models: [
      { name: 'twenty', targets: [{ backend: 'up', model: 'stream-20' }] },
      { name: 'slow', targets: [{ backend: 'up', model: 'slow-stream' }] },
      { name: 'big', targets: [{ backend: 'up', model: 'big-stream' }] },
      { name: 'garbled-then-ok', targets: [{ backend: 'up', model: 'garbled' }, { backend: 'up', model: 'stream-2' }] },
    ],
  }));
});

after(async () => {
  await gw?.stop();
  await fake?.close();
});

function streamOnce(agent, model) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'x' }] });
    const req = http.request(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('250 concurrent streams all arrive intact and in order', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 250 });
  const N = 250;
  const results = await Promise.all(Array.from({ length: N }, () => streamOnce(agent, 'twenty')));
  const expected = Array.from({ length: 20 }, (_, i) => `tok${i} `).join('');
  for (const [i, r] of results.entries()) {
    assert.equal(r.status, 200, `stream ${i}`);
    const events = r.text.split('\n\n').filter(Boolean);
    assert.equal(events[events.length - 1], 'data: [DONE]', `stream ${i} ends with [DONE]`);
    const content = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)))
      .map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(content, expected, `stream ${i} content`);
    assert.ok(!r.text.includes('"choices":[]'), `stream ${i} leaked the usage chunk`);
  }
  agent.destroy();
  const logged = await waitFor(() => {
    const n = gw.logs.filter((l) => l.event === 'request' && l.model === 'twenty' && l.status === 200).length;
    return n >= N ? n : 0;
  }, { what: `${N} request log lines` });
  assert.equal(logged, N);
});

test('a client that disconnects mid-stream aborts the upstream transfer at once', async () => {
  const before = fake.requests.length;
  const ac = new AbortController();
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'x' }] }),
  });
  const reader = res.body.getReader();
  await reader.read();
  await reader.read();
  const t0 = Date.now();
  ac.abort();
  const up = await waitFor(() => fake.requests.slice(before).find((r) => r.body?.model === 'slow-stream'),
    { what: 'the upstream request' });
  await waitFor(() => up.closedEarly, { timeout: 2000, what: 'the upstream socket to close' });
  assert.ok(Date.now() - t0 < 2000);
  const log = await gw.waitForLog((l) => l.event === 'request' && l.model === 'slow' && l.status === 499);
  assert.match(log.error, /client closed/);
  // And the gateway is fine afterwards.
  const r = await streamOnce(undefined, 'twenty');
  assert.equal(r.status, 200);
});

test('a garbled stream before any event fails over to the next target', async () => {
  const r = await streamOnce(undefined, 'garbled-then-ok');
  assert.equal(r.status, 200);
  assert.match(r.text, /tok0 /);
  assert.match(r.text, /data: \[DONE\]\n\n$/);
});

test('a client that reads slowly pauses the upstream instead of buffering it all', async () => {
  const net = await import('node:net');
  const before = fake.requests.length;
  const sock = net.connect(gw.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.pause(); // read nothing for now
  const body = JSON.stringify({ model: 'big', stream: true, messages: [{ role: 'user', content: 'x' }] });
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  const up = await waitFor(() => fake.requests.slice(before).find((r) => r.body?.model === 'big-stream'), { what: 'upstream request' });
  // While the client reads nothing, the gateway must stop reading the upstream once its
  // output buffer is full: the 20 MB stream cannot get far (socket buffers hold a few MB).
  await waitFor(() => up.progress > 0, { what: 'the stream to start' });
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(up.progress < 20000, `upstream wrote all ${up.progress} chunks to a gateway whose client reads nothing`);
  let text = '';
  sock.setEncoding('utf8');
  sock.on('data', (d) => { text += d; });
  sock.resume();
  await waitFor(() => text.includes('data: [DONE]'), { timeout: 30000, what: 'the whole stream' });
  sock.destroy();
  for (const i of [0, 9999, 19999]) assert.ok(text.includes(`"content":"${i}:x`), `chunk ${i} arrived`);
  assert.equal((text.match(/"content":"\d+:x/g) || []).length, 20000);
});
