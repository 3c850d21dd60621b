// HTTP/2 connections under valgrind (STRATUS_WRAPPER, set by scripts/run-tests valgrind):
// unary and streamed answers, a client reset, a closed connection with streams in flight,
// a refused oversized body, a protocol error and a GOAWAY shutdown with a stream running.
// Any leak or memory error makes valgrind exit 99.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor } from '../integration/lib/gateway.mjs';

function request(session, headers, body) {
  return new Promise((res, rej) => {
    const req = session.request(headers);
    let text = '';
    let status;
    req.setEncoding('utf8');
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', (d) => { text += d; });
    req.on('end', () => res({ status, text }));
    req.on('error', rej);
    req.end(body);
  });
}

test('no leaks or memory errors across HTTP/2 streams, resets and shutdown', async () => {
  assert.ok(process.env.STRATUS_WRAPPER?.includes('valgrind'), 'run me through scripts/run-tests valgrind');
  const fake = await startFake();
  const gw = await startGateway(config({
    extra: 'limits: { max_body_bytes: 10000 }',
    backends: [{ name: 'up', url: fake.url }],
    models: [{ name: 'chat', targets: [{ backend: 'up', model: 'ok' }] },
      { name: 'twenty', targets: [{ backend: 'up', model: 'stream-20' }] },
      { name: 'slow', targets: [{ backend: 'up', model: 'slow-stream' }] }],
  }));
  const post = (s, model, extra = {}) => request(s, { ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' },
    JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }], ...extra }));
  try {
    const s = http2.connect(gw.baseURL);
    s.on('error', () => {});
    assert.equal((await request(s, { ':path': '/health' })).status, 200);
    assert.equal((await post(s, 'chat')).status, 200);
    assert.match((await post(s, 'twenty', { stream: true })).text, /\[DONE\]/);
    assert.equal((await post(s, 'chat', { pad: 'x'.repeat(20000) })).status, 413);
    // A reset mid-stream, then a connection closed with two streams in flight.
    const slow = () => {
      const r = s.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
      r.on('error', () => {});
      r.end(JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'x' }] }));
      return new Promise((res) => r.once('data', () => res(r)));
    };
    (await slow()).close(http2.constants.NGHTTP2_CANCEL);
    await gw.waitForLog((l) => l.event === 'request' && l.status === 499, 30000);
    const s2 = http2.connect(gw.baseURL);
    s2.on('error', () => {});
    const slow2 = () => {
      const r = s2.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
      r.on('error', () => {});
      r.end(JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'x' }] }));
      return new Promise((res) => r.once('data', () => res(r)));
    };
    await Promise.all([slow2(), slow2()]);
    s2.destroy();
    await waitFor(() => gw.logs.filter((l) => l.event === 'request' && l.status === 499).length >= 3, { timeout: 30000, what: '499 lines' });
    // A protocol error.
    const raw = net.connect(gw.port, '127.0.0.1');
    raw.on('error', () => {});
    raw.resume(); // read, or its end (the server's close) is never seen
    await new Promise((r) => raw.once('connect', r));
    raw.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00garbage');
    await new Promise((r) => raw.once('close', r));
    // Shutdown with a stream still running: GOAWAY, it finishes, the process exits.
    const last = post(s, 'twenty', { stream: true });
    await new Promise((r) => setTimeout(r, 20));
    await gw.stop('SIGTERM');
    assert.match((await last).text, /\[DONE\]/);
    s.close();
  } finally {
    await gw.stop('SIGTERM');
    await fake.close();
  }
  assert.equal(gw.exitCode, 0, `valgrind reported problems:\n${gw.stderr.split('\n').filter((l) => l.startsWith('==')).join('\n')}`);
  assert.ok(!/definitely lost: [1-9]/.test(gw.stderr));
});
