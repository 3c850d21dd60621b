// Routing policies and resilience through the real gateway, driven by the official openai
// SDK against fake OpenAI upstreams whose behaviour changes mid-test (knobs): weighted split,
// latency moving traffic off a slow target and back, least-busy, cost, the circuit breaker's
// cooldown and half-open probe, retries with backoff and Retry-After, the first-byte
// timeout, x-stratus-route, and `stratus route explain`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, closedPort, writeConfig, BIN, SCALE } from './lib/gateway.mjs';

let a, b, c;
before(async () => {
  a = await startFake();
  b = await startFake();
  c = await startFake();
});
after(async () => {
  await a?.close();
  await b?.close();
  await c?.close();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const backends = () => [{ name: 'a', url: a.url }, { name: 'b', url: b.url }, { name: 'c', url: c.url }];

async function withGateway(models, fn, extraBackends = []) {
  const gw = await startGateway(config({ backends: [...backends(), ...extraBackends], models }));
  const client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'x', maxRetries: 0 });
  try {
    return await fn(gw, client);
  } finally {
    await gw.stop();
  }
}

async function ask(client, model) {
  const { data, response } = await client.chat.completions
    .create({ model, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
  return { data, backend: response.headers.get('x-stratus-backend'), route: response.headers.get('x-stratus-route'), id: response.headers.get('x-request-id') };
}

test('weighted: 1,000 requests split 1:3 within tolerance; weight 0 only as fallback', async () => {
  await withGateway([{ name: 'w', route: 'weighted', targets: [
    { backend: 'a', model: 'ok', weight: 1 }, { backend: 'b', model: 'ok', weight: 3 }, { backend: 'c', model: 'ok', weight: 0 }] }],
  async (gw, client) => {
    const counts = { a: 0, b: 0, c: 0 };
    for (let round = 0; round < 50; round++) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => ask(client, 'w')));
      for (const r of batch) counts[r.backend]++;
    }
    // Binomial(1000, 0.25): sd ≈ 13.7; ±60 is more than 4 sd.
    assert.ok(Math.abs(counts.a - 250) <= 60, `a got ${counts.a}`);
    assert.ok(Math.abs(counts.b - 750) <= 60, `b got ${counts.b}`);
    assert.equal(counts.c, 0);
    const r = await ask(client, 'w');
    assert.match(r.route, /^weighted; weighted pick [ab] \(weight [13]\)$/);
  });
});

test('weighted: the zero-weight target takes over when the others fail', async () => {
  await withGateway([{ name: 'w0', route: 'weighted', targets: [
    { backend: 'a', model: 'fail-500', weight: 1 }, { backend: 'c', model: 'ok', weight: 0 }] }],
  async (gw, client) => {
    const r = await ask(client, 'w0');
    assert.equal(r.backend, 'c');
    assert.match(r.route, /after 1 failed attempt/);
  });
});

test('latency: traffic leaves a target that slows down within a few requests, and returns after it recovers', async () => {
  a.knobs.la = { delay: 0 };
  b.knobs.lb = { delay: 0 };
  await withGateway([{ name: 'lat', route: 'latency', fields: { latency_decay_ms: 300 }, targets: [
    { backend: 'a', model: 'knob-la' }, { backend: 'b', model: 'knob-lb' }] }],
  async (gw, client) => {
    const seen = { a: 0, b: 0 };
    for (let i = 0; i < 10; i++) seen[(await ask(client, 'lat')).backend]++;
    assert.ok(seen.a > 0 && seen.b > 0, `both measured first: ${JSON.stringify(seen)}`);
    a.knobs.la.delay = 150; // a slows down
    const moved = [];
    for (let i = 0; i < 25; i++) moved.push((await ask(client, 'lat')).backend);
    const firstFiveOnA = moved.slice(0, 5).filter((x) => x === 'a').length;
    const restOnA = moved.slice(5).filter((x) => x === 'a').length;
    assert.ok(firstFiveOnA <= 2, `a still got ${firstFiveOnA} of the first 5: ${moved}`);
    assert.ok(restOnA <= 2, `after moving, a got ${restOnA} of 20: ${moved}`);
    const last = await ask(client, 'lat');
    assert.equal(last.backend, 'b');
    assert.match(last.route, /^latency; lowest ttfb b \([\d.]+ ms\)/);
    a.knobs.la.delay = 0; // a recovers; its slow estimate fades and one request finds out
    await sleep(1500);
    const back = { a: 0, b: 0 };
    for (let i = 0; i < 40; i++) {
      back[(await ask(client, 'lat')).backend]++;
      await sleep(10);
    }
    assert.ok(back.a >= 3, `a should get traffic again: ${JSON.stringify(back)}`);
  });
});

test('least-busy: while one target is busy, new requests go to the idle one', async () => {
  a.knobs.busy = { delay: 600 };
  b.knobs.busy = { delay: 0 };
  await withGateway([{ name: 'lb', route: 'least-busy', targets: [
    { backend: 'a', model: 'knob-busy' }, { backend: 'b', model: 'knob-busy' }] }],
  async (gw, client) => {
    const slow = ask(client, 'lb'); // tie → configured order → a, which holds it 600 ms
    await sleep(100);
    const during = [];
    for (let i = 0; i < 5; i++) during.push((await ask(client, 'lb')).backend);
    assert.deepEqual(during, ['b', 'b', 'b', 'b', 'b']);
    assert.equal((await slow).backend, 'a');
    const r = await ask(client, 'lb');
    assert.match(r.route, /^least-busy; least busy a \(0 in flight\)/);
  });
});

test('cost: the cheapest healthy target wins; unpriced targets come last', async () => {
  c.knobs.cheap = {};
  await withGateway([{ name: 'thrifty', route: 'cost', cooldown: '{ failures: 1, duration_ms: 60000 }', targets: [
    { backend: 'a', model: 'ok', price: { input: 3, output: 15 } },
    { backend: 'b', model: 'ok' },
    { backend: 'c', model: 'knob-cheap', price: { input: 0.15, output: 0.6 } }] }],
  async (gw, client) => {
    const r = await ask(client, 'thrifty');
    assert.equal(r.backend, 'c');
    assert.match(r.route, /^cost; cheapest c \(\$0\.\d+ expected\)$/);
    c.knobs.cheap.fail = 500; // the cheapest breaks: failover to the next cheapest, then skip it
    const r2 = await ask(client, 'thrifty');
    assert.equal(r2.backend, 'a');
    const before = c.requests.length;
    const r3 = await ask(client, 'thrifty');
    assert.equal(r3.backend, 'a');
    assert.equal(c.requests.length, before, 'the cooled-down cheapest target was skipped');
  });
});

test('circuit breaker: failures open it (target skipped), then a half-open probe closes it', async () => {
  a.knobs.cb = { fail: 500 };
  await withGateway([{ name: 'cb', cooldown: '{ failures: 2, window_ms: 10000, duration_ms: 700 }', targets: [
    { backend: 'a', model: 'knob-cb' }, { backend: 'b', model: 'ok' }] }],
  async (gw, client) => {
    for (let i = 0; i < 2; i++) {
      const r = await ask(client, 'cb');
      assert.equal(r.backend, 'b');
      const log = await gw.waitForLog((l) => l.event === 'request' && l.id === r.id);
      assert.equal(log.attempts, 2);
    }
    const seenByA = a.requests.filter((q) => q.body?.model === 'knob-cb').length;
    const skipped = await ask(client, 'cb');
    assert.equal(skipped.backend, 'b');
    const log = await gw.waitForLog((l) => l.event === 'request' && l.id === skipped.id);
    assert.equal(log.attempts, 1, 'the open target was skipped, not tried');
    assert.equal(a.requests.filter((q) => q.body?.model === 'knob-cb').length, seenByA);
    a.knobs.cb.fail = 0; // a recovers
    await sleep(800);
    const probe = await ask(client, 'cb');
    assert.equal(probe.backend, 'a', 'after the cooldown one probe goes to a and succeeds');
    assert.equal((await ask(client, 'cb')).backend, 'a', 'closed again');
  });
});

test('retries: a pass that failed everywhere is retried after a backoff', async () => {
  a.knobs.flaky = { failTimes: 2 };
  await withGateway([{ name: 'flaky', retry: '{ retries: 2, backoff_ms: 20, max_backoff_ms: 50 }', targets: [
    { backend: 'a', model: 'knob-flaky' }] }],
  async (gw, client) => {
    const r = await ask(client, 'flaky');
    assert.equal(r.backend, 'a');
    const log = await gw.waitForLog((l) => l.event === 'request' && l.id === r.id);
    assert.equal(log.attempts, 3);
    assert.equal(log.status, 200);
  });
});

test('retries honour Retry-After, and give up when it is longer than max_retry_after_ms', async () => {
  await withGateway([
    { name: 'patient', retry: '{ retries: 1, backoff_ms: 10 }', targets: [{ backend: 'a', model: 'fail-429' }] },
    { name: 'impatient', retry: '{ retries: 1, max_retry_after_ms: 500 }', targets: [{ backend: 'a', model: 'fail-429' }] },
  ], async (gw) => {
    const post = (model) => fetch(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }] }),
    });
    let t0 = Date.now();
    let res = await post('patient');
    assert.equal(res.status, 429);
    assert.ok(Date.now() - t0 >= 950, `waited the upstream's Retry-After: 1 (${Date.now() - t0} ms)`);
    assert.equal((await res.json()).error.attempts.length, 2);
    t0 = Date.now();
    res = await post('impatient');
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '1');
    assert.equal((await res.json()).error.attempts.length, 1);
    assert.ok(Date.now() - t0 < 900);
  });
});

test('first_byte_timeout_ms: a target silent past it is abandoned for the next one', async () => {
  await withGateway([{ name: 'fbt', targets: [{ backend: 'sleepy', model: 'slow-first-byte-3000' }, { backend: 'b', model: 'ok' }] }],
    async (gw, client) => {
      const t0 = Date.now();
      const r = await ask(client, 'fbt');
      assert.equal(r.backend, 'b');
      assert.ok(Date.now() - t0 < 2000 * SCALE, 'did not wait for the slow upstream');
      const log = await gw.waitForLog((l) => l.event === 'request' && l.id === r.id);
      assert.equal(log.attempts, 2);
    }, [{ name: 'sleepy', url: a.url, first_byte_timeout_ms: 200 }]);
});

test('first byte timeout on the only target → 504 naming it', async () => {
  await withGateway([{ name: 'fbt1', targets: [{ backend: 'sleepy', model: 'slow-first-byte-3000' }] }],
    async (gw) => {
      const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'fbt1', messages: [{ role: 'user', content: 'x' }] }),
      });
      assert.equal(res.status, 504);
      const { error } = await res.json();
      assert.match(error.message, /no first byte within 200 ms/);
    }, [{ name: 'sleepy', url: a.url, first_byte_timeout_ms: 200 }]);
});

test('route explain prints health, scores, the choice and why', () => {
  const file = writeConfig(config({
    backends: [...backends(), { name: 'down', url: `http://127.0.0.1:${closedPort}/v1` }],
    models: [{ name: 'thrifty', route: 'cost', targets: [
      { backend: 'a', model: 'pricey', price: { input: 3, output: 15 } },
      { backend: 'down', model: 'cheapest', price: { input: 0.01, output: 0.01 } },
      { backend: 'b', model: 'cheap', price: { input: 0.15, output: 0.6 } },
      { backend: 'c', model: 'mystery' }] }],
  }));
  const out = spawnSync(BIN, ['route', 'explain', '--config', file, '--model', 'thrifty', '--prompt-tokens', '2000', '--max-tokens', '100'], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stdout, /model 'thrifty': route cost, 4 targets/);
  assert.match(out.stdout, /~2000 prompt tokens, 100 output tokens/);
  assert.match(out.stdout, /pricey\s+a \(openai\)\s+ok\s+reachable/);
  assert.match(out.stdout, /down \(openai\)\s+ok\s+unreachable/);
  assert.match(out.stdout, /expected \$0\.007500 \(2000 in \+ 100 out tokens\)/); // 2000*3/1e6 + 100*15/1e6
  assert.match(out.stdout, /mystery.*no known price/);
  assert.match(out.stdout, /chosen: down \/ cheapest\nwhy: cost; cheapest down/);
  assert.match(out.stdout, /failover order: b\/cheap, a\/pricey, c\/mystery/);
  assert.match(out.stdout, /note: down is unreachable/);
  const bad = spawnSync(BIN, ['route', 'explain', '--config', file, '--model', 'nope'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /no model 'nope'.*models: thrifty/);
});
