// Two gateway instances sharing one budget and one rate limit: ledger and keys in a real
// PostgreSQL, live counters in a real Redis (both from Debian's packages, on loopback ports,
// started here). Each assertion would fail if the instances counted on their own: the
// budget would be overrun about twice, the rate limit doubled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor, SCALE } from './lib/gateway.mjs';
import { startPostgres, startRedis } from './lib/services.mjs';

const MK = 'test-master-key-0123456789';
const env = { MK };
let up, pg, redis, a, b;

const PRICE = { input: 1000, output: 1000 }; // the fake's 11 + 5 tokens cost $0.016
const models = [{ name: 'slow', targets: [{ backend: 'up', model: 'slow-first-byte-100', price: PRICE }] },
  { name: 'chat', targets: [{ backend: 'up', model: 'ok', price: PRICE }] }];

before(async () => {
  up = await startFake();
  pg = await startPostgres();
  redis = await startRedis();
  const extra = `auth: { master_key: env:MK, refresh_ms: 200 }\nstore: { url: "${pg.url}", redis: "${redis.url}" }\n` +
    'budgets:\n  - { team: shared, limit_usd: 0.1, period: daily }\n';
  const yaml = config({ extra, backends: [{ name: 'up', url: up.url }], models });
  [a, b] = await Promise.all([startGateway(yaml, { env }), startGateway(yaml, { env })]);
});
after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await up?.close();
  await redis?.close();
  await pg?.close();
});

const chat = (gw, key, model = 'chat', extra = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }),
});
async function createKey(gw, settings) {
  const r = await fetch(`${gw.baseURL}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MK}` }, body: JSON.stringify(settings) });
  assert.equal(r.status, 201);
  const k = await r.json();
  // Made on `gw`; the other instance reads it from PostgreSQL within refresh_ms.
  const other = gw === a ? b : a;
  await waitFor(async () => (await chat(other, k.key, 'nope')).status !== 401, { timeout: 3000 * SCALE, what: 'the key on the other instance' });
  return k;
}

test('a key made on one instance works on the other; their RPM limit is one limit', async () => {
  const k = await createKey(a, { rpm: 4 });
  const codes = [];
  for (const gw of [a, b, a, b, a, b]) codes.push((await chat(gw, k.key)).status);
  assert.deepEqual(codes, [200, 200, 200, 200, 429, 429]);
  const r = await chat(b, k.key);
  assert.equal(r.headers.get('x-ratelimit-limit-requests'), '4');
  assert.equal(r.headers.get('x-ratelimit-remaining-requests'), '0');
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
});

test('64 concurrent requests split over two instances overshoot a shared budget by at most one reservation', async () => {
  const k = await createKey(b, { team: 'shared' });
  const body = { max_tokens: 1 };
  const rs = await Promise.all(Array.from({ length: 64 }, (_, i) => chat(i % 2 ? a : b, k.key, 'slow', body)));
  const codes = rs.map((r) => r.status);
  await Promise.all(rs.map((r) => r.arrayBuffer()));
  const ok = codes.filter((c) => c === 200).length;
  assert.equal(ok + codes.filter((c) => c === 429).length, 64, codes.join(','));
  await waitFor(() => Number(pg.query(`SELECT COUNT(*) FROM requests WHERE team = 'shared'`)[0][0]) >= 64, { what: 'ledger rows' });
  const spent = Number(pg.query(`SELECT COALESCE(SUM(cost_usd), 0) FROM requests WHERE team = 'shared'`)[0][0]);
  const bytes = JSON.stringify({ model: 'slow', messages: [{ role: 'user', content: 'hi' }], ...body }).length;
  const reservation = (Math.floor(bytes / 4) + 1) * 1000 / 1e6;
  assert.ok(spent <= 0.1 + reservation + 1e-9, `spent $${spent} on a $0.1 budget (reservation $${reservation}); ${ok} admitted`);
  assert.ok(Math.abs(spent - ok * 0.016) < 1e-9);
  // And the counter in Redis is what the ledger says (every reservation settled).
  const counter = (await redisGet(`stratus:budget:team:d:${Math.floor(Date.now() / 86400000) * 86400000}:shared`));
  assert.ok(Math.abs(Number(counter) - spent) < 1e-9, `redis ${counter} vs ledger ${spent}`);
});

test('Redis going away: requests are still served, limits fall back to each instance, and the log says so', async () => {
  const k = await createKey(a, { rpm: 1000 });
  await redis.close();
  assert.equal((await chat(a, k.key)).status, 200);
  await a.waitForLog((l) => l.event === 'redis_unavailable', 5000 * SCALE);
});

async function redisGet(key) {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.connect(redis.port, '127.0.0.1', () => s.write(`GET ${key}\r\n`));
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      const m = /^\$(-?\d+)\r\n/.exec(buf);
      if (m && (m[1] === '-1' || buf.length >= m[0].length + Number(m[1]) + 2)) {
        s.end();
        resolve(m[1] === '-1' ? null : buf.slice(m[0].length, m[0].length + Number(m[1])));
      }
    });
    s.on('error', reject);
  });
}
