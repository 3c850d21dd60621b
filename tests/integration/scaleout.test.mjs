// Scale-out on one machine (#14 item 5): two gateways sharing PostgreSQL (ledger, keys) and
// Redis (limits, budgets, cache), two engine processes — one each gateway's own child, one a
// remote engine over TCP both use — and a fake cloud. Under load through both gateways:
// one shared RPM limit, a shared budget overshot by at most one reservation, cache hits
// across gateways; then kill -9 of the remote engine (requests fail over, none is lost) and of
// one gateway (the other keeps serving, and with store.durable every answer a client got has
// its ledger row). Prints the figures BENCHMARKS.md quotes ("Scale-out").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, waitFor, BIN, SCALE } from './lib/gateway.mjs';
import { startPostgres, startRedis } from './lib/services.mjs';

const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
const MK = 'scaleout-master-key-0123456789';
const TOKEN = 'scaleout-engine-token-0123456789';
let up, pg, redis, engine, a, b;

const freePort = () => new Promise((res) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
});

before(async () => {
  up = await startFake();
  pg = await startPostgres();
  redis = await startRedis();
  const port = await freePort();
  const wrapper = process.env.STRATUS_WRAPPER ? process.env.STRATUS_WRAPPER.split(/\s+/).filter(Boolean) : [];
  const cmd = [...wrapper, BIN, 'engine', '--model', MODEL, '--listen', `127.0.0.1:${port}`, '--token', 'env:ENGINE_TOKEN',
    '--parallel', '2', '--threads', '1', '--ctx', '512', '--name', 'tiny'];
  const child = spawn(cmd[0], cmd.slice(1), { env: { ...process.env, ENGINE_TOKEN: TOKEN }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  await waitFor(() => log.includes('"engine_ready"') || child.exitCode !== null, { timeout: 60000, what: 'the remote engine' });
  engine = { child, url: `http://127.0.0.1:${port}` };
  const yaml = (own) => `log: { requests: true }
auth: { master_key: env:MK, refresh_ms: 200 }
store: { url: "${pg.url}", redis: "${redis.url}", durable: true }
cache: { ttl_s: 600 }
budgets:
  - { team: ml, limit_usd: 0.002, period: daily }
backends:
  - { name: far, type: local, url: "${engine.url}", token: env:ENGINE_TOKEN, connect_timeout_ms: 500 }
${own ? `  - { name: near, type: local, model_path: "${MODEL}", parallel: 2, threads: 1, ctx_size: 512 }\n` : ''}  - { name: cloud, type: openai, base_url: "${up.url}" }
models:
  - { name: tiny, route: least-busy, retry: { retries: 1, backoff_ms: 50 }, targets: [ { backend: far, model: tiny }${own ? ', { backend: near, model: tiny }' : ''}, { backend: cloud, model: ok } ] }
  - { name: chat, targets: [ { backend: cloud, model: ok, price: { input: 10, output: 30 } } ] }
`;
  const env = { MK, ENGINE_TOKEN: TOKEN };
  [a, b] = await Promise.all([startGateway(yaml(true), { env }), startGateway(yaml(false), { env })]);
  for (const gw of [a, b])
    await waitFor(async () => (await fetch(`${gw.baseURL}/ready`)).status === 200, { timeout: 60000 * SCALE, what: 'ready' });
});
after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  engine?.child.kill('SIGKILL');
  await up?.close();
  await redis?.close();
  await pg?.close();
});

const call = (gw, key, body) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], ...body }),
});
async function createKey(settings) {
  const r = await fetch(`${a.baseURL}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MK}` }, body: JSON.stringify(settings) });
  assert.equal(r.status, 201);
  const k = (await r.json()).key;
  await waitFor(async () => (await call(b, k, { model: 'nope' })).status !== 401, { timeout: 3000 * SCALE, what: 'the key on b' });
  return k;
}
const figure = (line) => console.log(`# scale-out: ${line}`);

test('one RPM limit and one budget across both gateways, and cache hits across them', async () => {
  const limited = await createKey({ rpm: 10 });
  const codes = await Promise.all(Array.from({ length: 30 }, (_, i) => call(i % 2 ? a : b, limited, { model: 'chat', temperature: 0.5 }).then((r) => r.status)));
  const ok = codes.filter((c) => c === 200).length;
  assert.equal(ok, 10, `exactly the shared limit got through: ${codes}`);
  assert.equal(codes.filter((c) => c === 429).length, 20);
  figure(`shared RPM 10: 30 concurrent requests over 2 gateways → ${ok} admitted, ${30 - ok} refused 429`);

  const spender = await createKey({ team: 'ml' });
  const body = { model: 'chat', temperature: 0.5, max_tokens: 20 };
  await Promise.all(Array.from({ length: 40 }, (_, i) => call(i % 2 ? a : b, spender, body).then((r) => r.text())));
  await new Promise((r) => setTimeout(r, 300));
  const [[spent]] = pg.query("SELECT COALESCE(sum(cost_usd), 0) FROM requests WHERE team = 'ml'");
  // One reservation: the prompt estimate (~body bytes / 4) at $10/M + 20 output tokens at $30/M.
  const reservation = (200 / 4) * 10e-6 + 20 * 30e-6;
  assert.ok(Number(spent) <= 0.002 + reservation, `spent ${spent} ≤ limit + one reservation`);
  figure(`shared budget $0.002: 40 concurrent requests over 2 gateways → spent $${Number(spent).toFixed(6)} (limit + one reservation = $${(0.002 + reservation).toFixed(6)})`);

  const free = await createKey({});
  const q = { model: 'chat', temperature: 0, messages: [{ role: 'user', content: 'the shared question' }] };
  const first = await call(a, free, q);
  assert.equal(first.headers.get('x-stratus-cache'), 'miss');
  await first.text();
  await new Promise((r) => setTimeout(r, 200));
  const second = await call(b, free, q);
  assert.equal(second.headers.get('x-stratus-cache'), 'hit');
  assert.match(second.headers.get('x-stratus-route'), /\(shared\)/);
  figure('cache: a request answered through gateway a is a hit (shared) through gateway b');
});

test('kill -9 of the remote engine: requests fail over; kill -9 of a gateway: the other serves and every answered request has its row', async (t) => {
  const key = await createKey({});
  // Load through both gateways on the engines' model group, then kill the remote engine.
  let stop = false;
  const answered = [], failed = [];
  const loop = async (gw) => {
    while (!stop) {
      try {
        const res = await call(gw, key, { model: 'tiny', max_tokens: 4, temperature: 0.7 });
        await res.text();
        if (res.status === 200) answered.push({ gw, id: res.headers.get('x-request-id'), backend: res.headers.get('x-stratus-backend') });
        else failed.push(res.status);
      } catch (e) {
        failed.push(String(e.cause?.code ?? e.message));
      }
    }
  };
  const loops = [loop(a), loop(a), loop(b), loop(b)];
  await waitFor(() => answered.length >= 8, { timeout: 30000 * SCALE, what: 'answers before the kill' });
  engine.child.kill('SIGKILL');
  const atKill = answered.length;
  await waitFor(() => answered.length >= atKill + 12, { timeout: 30000 * SCALE, what: 'answers after the engine died' });
  const afterKill = answered.slice(atKill);
  assert.ok(afterKill.every((x) => x.backend !== 'far' || answered.indexOf(x) < atKill + 4), 'far is out once it died');
  assert.equal(failed.filter((f) => f !== 200).length, 0, `no request failed while the engine died: ${failed}`);
  figure(`remote engine kill -9 under load: ${afterKill.length} later answers, all by ${[...new Set(afterKill.map((x) => x.backend))].join(' + ')}, 0 failed`);

  // Now kill gateway a mid-load: b keeps serving. A killed gateway cannot remove its engine's
  // run directory: found from the engine's command line, removed by the test.
  const enginePid = a.logs.find((l) => l.event === 'engine_started')?.pid;
  const cmdline = enginePid ? readFileSync(`/proc/${enginePid}/cmdline`, 'utf8').split('\0') : [];
  const socket = cmdline[cmdline.indexOf('--socket') + 1];
  const beforeA = answered.filter((x) => x.gw === a).length;
  a.child.kill('SIGKILL');
  if (socket) t.after(() => rmSync(dirname(socket), { recursive: true, force: true }));
  const bAtKill = answered.filter((x) => x.gw === b).length;
  await waitFor(() => answered.filter((x) => x.gw === b).length >= bAtKill + 8, { timeout: 30000 * SCALE, what: 'b serving after a died' });
  stop = true;
  await Promise.all(loops);
  // Every answer a client received (from either gateway) has its row in PostgreSQL.
  await new Promise((r) => setTimeout(r, 500));
  const ids = answered.map((x) => x.id);
  const rows = new Set(pg.query(`SELECT request_id FROM requests WHERE request_id IN (${ids.map((i) => `'${i}'`).join(',')})`).map((r) => r[0]));
  const missing = ids.filter((id) => !rows.has(id));
  assert.deepEqual(missing, [], 'store.durable: no answered request without its ledger row');
  figure(`gateway kill -9 under load (store.durable): ${answered.length} answered requests (${beforeA} through the killed gateway), ${missing.length} ledger rows missing; the other gateway kept serving`);
});
