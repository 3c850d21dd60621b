// Keys, admin jobs, budgets, rate limits and Redis-shared counters under valgrind: any leak or
// memory error (store-jobs thread, hiredis callbacks, key table swaps) makes valgrind exit 99.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config } from '../integration/lib/gateway.mjs';
import { startRedis } from '../integration/lib/services.mjs';

test('no leaks across keys, admin calls, limits, budgets and Redis (down and up)', async () => {
  assert.ok(process.env.STRATUS_WRAPPER?.includes('valgrind'), 'run me through scripts/run-tests valgrind');
  const fake = await startFake();
  const redis = await startRedis();
  const MK = 'leak-master-key-0123456789';
  const gw = await startGateway(config({
    extra: `auth: { master_key: env:MK, refresh_ms: 100 }\nstore: { redis: "${redis.url}" }\n` +
      'budgets:\n  - { team: t, limit_usd: 0.03, period: daily }\n  - { customer: "*", limit_usd: 100, period: monthly }',
    backends: [{ name: 'up', url: fake.url }],
    models: [{ name: 'chat', targets: [{ backend: 'up', model: 'ok', price: { input: 1000, output: 1000 } }] },
      { name: 'slow', targets: [{ backend: 'up', model: 'slow-stream' }] }],
  }), { env: { MK } });
  const call = (key, body = {}, headers = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }], ...body }),
  });
  const adm = (method, path, body) => fetch(`${gw.baseURL}${path}`, { method, headers: { authorization: `Bearer ${MK}` }, body: body && JSON.stringify(body) });
  try {
    const k = await (await adm('POST', '/admin/keys', { team: 't', rpm: 3, tpm: 100000 })).json();
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await call(k.key, {}, { 'x-stratus-customer': 'c' })).status);
    assert.deepEqual(codes, [200, 200, 429, 429, 429]); // budget after 2, then RPM
    assert.equal((await call('sk-stratus-nope')).status, 401);
    assert.equal((await adm('GET', '/admin/keys')).status, 200);
    assert.equal((await adm('GET', '/admin/spend?group_by=team&from=1d')).status, 200);
    assert.equal((await adm('POST', '/admin/keys', { models: ['nope'] })).status, 400);
    assert.equal((await adm('DELETE', `/admin/keys/${k.id}`)).status, 200);
    assert.equal((await call(k.key)).status, 401);
    // A client that leaves while its admission is out, and one mid-stream.
    const k2 = await (await adm('POST', '/admin/keys', { rpm: 1000 })).json();
    const ac = new AbortController();
    const r = await fetch(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal, headers: { authorization: `Bearer ${k2.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'x' }] }),
    });
    await r.body.getReader().read();
    ac.abort();
    await gw.waitForLog((l) => l.event === 'request' && l.status === 499, 30000);
    await redis.close(); // fall back to in-process counters
    assert.equal((await call(k2.key)).status, 200);
    await gw.waitForLog((l) => l.event === 'redis_unavailable', 30000);
  } finally {
    await gw.stop('SIGTERM');
    await fake.close();
  }
  assert.equal(gw.exitCode, 0, gw.stderr.slice(-3000));
});
