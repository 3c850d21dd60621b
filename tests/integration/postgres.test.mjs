// The ledger on a real PostgreSQL (Debian's server, started on a loopback port by the test):
// migrations at start (run once even when two instances start together), one row per
// request from two gateway instances sharing the database, and no row lost when the
// database goes away for a while: rows stay queued, a full queue is counted and logged, and
// queued rows are written once PostgreSQL is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor } from './lib/gateway.mjs';
import { startPostgres } from './lib/services.mjs';

let up, pg;
before(async () => {
  up = await startFake();
  pg = await startPostgres();
});
after(async () => {
  await up?.close();
  await pg?.close();
});

const models = [{ name: 'chat', targets: [{ backend: 'up', model: 'ok', price: { input: 1, output: 2 } }] }];
const post = (gw, headers = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
});

test('two instances share one PostgreSQL ledger; migrations run once', async () => {
  const extra = `store: { url: "${pg.url}" }`;
  const [g1, g2] = await Promise.all([
    startGateway(config({ extra, backends: [{ name: 'up', url: up.url }], models })),
    startGateway(config({ extra, backends: [{ name: 'up', url: up.url }], models })),
  ]);
  for (let i = 0; i < 20; i++) assert.equal((await post(i % 2 ? g2 : g1, { 'x-stratus-customer': `c${i % 3}` })).status, 200);
  await Promise.all([g1.stop(), g2.stop()]);
  assert.deepEqual(pg.query('SELECT version FROM schema_migrations ORDER BY version'), [['1'], ['2'], ['3'], ['4'], ['5'], ['6'], ['7']]);
  assert.deepEqual(pg.query('SELECT COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM requests'), [['20', '220', '100']]);
  assert.deepEqual(pg.query("SELECT customer, COUNT(*) FROM requests GROUP BY customer ORDER BY customer"),
    [['c0', '7'], ['c1', '7'], ['c2', '6']]);
  const cost = Number(pg.query('SELECT SUM(cost_usd) FROM requests')[0][0]);
  assert.ok(Math.abs(cost - 20 * (11 + 10) / 1e6) < 1e-12);
});

test('AWS credentials of keys live in PostgreSQL too: made on one instance, SigV4 verified on another', async () => {
  const MK = 'sk-master-postgres-aws-0123456789';
  const extra = `store: { url: "${pg.url}" }\nauth: { master_key: env:MK, refresh_ms: 200 }`;
  const cfg = config({ extra, backends: [{ name: 'up', url: up.url }], models });
  const [g1, g2] = await Promise.all([startGateway(cfg, { env: { MK } }), startGateway(cfg, { env: { MK } })]);
  try {
    const made = await (await fetch(`${g1.baseURL}/admin/keys`, { method: 'POST',
      headers: { authorization: `Bearer ${MK}` }, body: JSON.stringify({ aws: true, name: 'pg-aws' }) })).json();
    assert.match(made.aws_access_key_id, /^ASTR/);
    const stored = pg.query(`SELECT aws_secret_sealed <> '' FROM api_keys WHERE aws_key_id = '${made.aws_access_key_id}'`);
    assert.deepEqual(stored, [['t']]);
    assert.equal(pg.query('SELECT COUNT(*) FROM api_keys').flat().join(), '1');
    assert.ok(!JSON.stringify(pg.query('SELECT * FROM api_keys')).includes(made.aws_secret_access_key), 'secret not stored in clear');
    const { BedrockRuntimeClient, ConverseCommand } = await import('@aws-sdk/client-bedrock-runtime');
    const client = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: g2.baseURL, maxAttempts: 1,
      credentials: { accessKeyId: made.aws_access_key_id, secretAccessKey: made.aws_secret_access_key } });
    const out = await waitFor(async () => {
      try { return await client.send(new ConverseCommand({ modelId: 'chat', messages: [{ role: 'user', content: [{ text: 'hi' }] }] })); } catch { return null; }
    }, { timeout: 5000, what: 'the key to reach the second instance' });
    assert.equal(out.output.message.content[0].text, 'Hello from the fake');
  } finally {
    await Promise.all([g1.stop(), g2.stop()]);
  }
});

test('text with tabs and backslashes survives the COPY batch exactly', async () => {
  const gw = await startGateway(config({ extra: `store: { url: "${pg.url}" }`, backends: [{ name: 'up', url: up.url }], models }));
  assert.equal((await post(gw, { 'x-stratus-customer': 'tab\there \\N back\\slash' })).status, 200);
  await gw.stop();
  const got = pg.query("SELECT replace(customer, E'\\t', '<TAB>') FROM requests WHERE customer LIKE 'tab%'");
  assert.deepEqual(got, [['tab<TAB>here \\N back\\slash']]);
});

test('PostgreSQL down: rows wait, a full queue is counted and logged, then everything queued is written', async () => {
  const before = Number(pg.query('SELECT COUNT(*) FROM requests')[0][0]);
  const gw = await startGateway(config({ extra: `store: { url: "${pg.url}", queue_size: 5 }`,
    backends: [{ name: 'up', url: up.url }], models }));
  await pg.stop();
  for (let i = 0; i < 8; i++) assert.equal((await post(gw)).status, 200, 'requests are served while the ledger waits');
  await gw.waitForLog((l) => l.event === 'ledger_write_failed', 10000);
  const full = await gw.waitForLog((l) => l.event === 'ledger_queue_full', 10000);
  assert.match(full.message, /ledger queue full \(5 rows\)/);
  await pg.start();
  await waitFor(() => Number(pg.query('SELECT COUNT(*) FROM requests')[0][0]) >= before + 5, { timeout: 15000, what: 'queued rows written' });
  await gw.stop();
  assert.equal(gw.exitCode, 0);
  const after = Number(pg.query('SELECT COUNT(*) FROM requests')[0][0]);
  // 5 fit in the queue (one may have been in the failed batch: it is retried, not lost);
  // the rest were refused and logged.
  assert.ok(after - before >= 5 && after - before <= 6, `wrote ${after - before}`);
});

test('a store that cannot be reached at start stops the gateway with a clear message', async () => {
  await assert.rejects(startGateway(config({ extra: 'store: { url: "postgres://nobody@127.0.0.1:1/db" }',
    backends: [{ name: 'up', url: up.url }], models })), /ledger: postgres: cannot connect/);
});
