// Customer tiers under valgrind (STRATUS_WRAPPER, set by scripts/run-tests valgrind): keys
// with tiers, the customer table through the admin API (set, list, remove, bad input), tier
// refusals, route_to, route: margin, streams, margin reports, then SIGTERM. Any leak or
// memory error makes valgrind exit 99.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config } from '../integration/lib/gateway.mjs';

test('no leaks or memory errors with tiers, customers, margin routing and margin reports', async () => {
  assert.ok(process.env.STRATUS_WRAPPER?.includes('valgrind'), 'run me through scripts/run-tests valgrind');
  const fake = await startFake();
  const MK = 'leak-master-key-0123456789';
  const gw = await startGateway(config({
    extra: `auth: { master_key: env:MK, refresh_ms: 200 }
tiers:
  - { name: free, price: { per_request: 0 }, route_to: cheap, default: true }
  - { name: standard, price: { input: 1, output: 4 }, models: [cheap, smart], min_margin: 0.3, max_cost_usd: 1 }
  - { name: premium, price: { input: 50, output: 200, per_request: 0.001 } }
customers: { acme: premium }
functions:
  - { name: say, model: smart, kind: text, template: "Say: {{text}}" }`,
    backends: [{ name: 'up', url: fake.url }],
    models: [
      { name: 'cheap', targets: [{ backend: 'up', model: 'ok', price: { input: 0.1, output: 0.2 } }] },
      { name: 'smart', route: 'margin', targets: [{ backend: 'up', model: 'ok', price: { input: 10, output: 30 } }, { backend: 'up', model: 'echo', price: { input: 0.1, output: 0.2 } }] },
    ],
  }), { env: { MK } });
  const call = (method, path, body, key = MK, headers = {}) => fetch(`${gw.baseURL}${path}`, {
    method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const chat = async (key, model, headers = {}, extra = {}) => {
    const r = await call('POST', '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], ...extra }, key, headers);
    await r.text();
    return r.status;
  };
  try {
    const std = await (await call('POST', '/admin/keys', { tier: 'standard' })).json();
    assert.equal((await call('POST', '/admin/keys', { tier: 'gold' })).status, 400);
    assert.equal(await chat(std.key, 'smart'), 200);
    assert.equal(await chat(std.key, 'smart', {}, { stream: true }), 200);
    assert.equal(await chat(MK, 'smart'), 200); // default tier: route_to cheap
    assert.equal(await chat(MK, 'smart', { 'x-stratus-customer': 'acme' }), 200);
    assert.equal((await call('POST', '/admin/customers', { customer: 'x y', tier: 'standard' })).status, 200);
    assert.equal((await call('POST', '/admin/customers', { customer: 'x y', tier: 'nope' })).status, 400);
    assert.equal((await call('POST', '/admin/customers', '{bad')).status, 400);
    assert.equal((await call('POST', '/admin/customers', { customer: 'z', tier: 'free', extra: 1 })).status, 400);
    assert.equal((await (await call('GET', '/admin/customers')).json()).data.length, 1);
    assert.equal(await chat(MK, 'smart', { 'x-stratus-customer': 'x y' }), 200);
    assert.equal((await call('DELETE', '/admin/customers/x%20y')).status, 200);
    assert.equal((await call('DELETE', '/admin/customers/x%20y')).status, 404);
    const fn = await call('POST', '/v1/functions/say/invoke', { text: 'hi' }, std.key);
    assert.equal(fn.status, 200);
    await fn.text();
    assert.equal((await call('GET', '/admin/spend?group_by=tier')).status, 200);
    assert.equal((await call('GET', '/admin/spend?group_by=customer&margin=1')).status, 200);
    assert.equal((await call('GET', '/admin/spend?group_by=tier&top=2')).status, 400);
  } finally {
    await gw.stop('SIGTERM');
    await fake.close();
  }
  assert.equal(gw.exitCode, 0, `valgrind reported problems:\n${gw.stderr.split('\n').filter((l) => l.startsWith('==')).join('\n')}`);
  assert.ok(!/definitely lost: [1-9]/.test(gw.stderr));
});
