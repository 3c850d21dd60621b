// Pricing through the real gateway: config prices, the catalogue (dated snapshots, Bedrock
// region prefixes), cached tokens priced separately, unknown prices reported as unknown (with
// a start-up warning) and never as 0, streams carrying their cost in the usage chunk, and
// estimated usage when a stream breaks before the provider counted it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config } from './lib/gateway.mjs';

let up, gw, client;
before(async () => {
  up = await startFake();
  gw = await startGateway(config({
    backends: [{ name: 'up', url: up.url }],
    models: [
      { name: 'priced', targets: [{ backend: 'up', model: 'ok', price: { input: 2, output: 10 } }] },
      { name: 'catalogue', targets: [{ backend: 'up', model: 'gpt-4o-mini-2024-07-18' }] },
      { name: 'cached', targets: [{ backend: 'up', model: 'gpt-4o-cached' }] },
      { name: 'unknown', targets: [{ backend: 'up', model: 'ok' }] },
      { name: 'cut', targets: [{ backend: 'up', model: 'reset-mid-stream', price: { input: 1, output: 1 } }] },
    ],
  }));
  client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'x', maxRetries: 0 });
});
after(async () => {
  await gw?.stop();
  await up?.close();
});

const ask = (model, extra = {}) => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }).withResponse();
const logOf = (response) => gw.waitForLog((l) => l.event === 'request' && l.id === response.headers.get('x-request-id'));

test('a configured price: x-stratus-cost-usd and the log carry the cost', async () => {
  const { response } = await ask('priced');
  // usage 11 in / 5 out at $2 / $10 per 1M
  assert.equal(response.headers.get('x-stratus-cost-usd'), '0.00007200');
  const log = await logOf(response);
  assert.equal(log.cost_usd, 0.000072);
  assert.equal(log.usage_estimated, false);
});

test('the catalogue prices a dated snapshot by its family (gpt-4o-mini)', async () => {
  const { response } = await ask('catalogue');
  // 11 × 0.15 + 5 × 0.60 = 4.65 per 1M
  assert.equal(response.headers.get('x-stratus-cost-usd'), '0.00000465');
});

test('cached prompt tokens are priced at the cached-input rate', async () => {
  const { data, response } = await ask('cached');
  assert.equal(data.usage.prompt_tokens_details.cached_tokens, 8);
  // gpt-4o: 3 × 2.50 + 8 × 1.25 + 5 × 10 = 67.5 per 1M
  assert.equal(response.headers.get('x-stratus-cost-usd'), '0.00006750');
  assert.equal((await logOf(response)).cached_tokens, 8);
});

test('an unknown price is reported as unknown, never 0, and warned about at start', async () => {
  const { response } = await ask('unknown');
  assert.equal(response.headers.get('x-stratus-cost-usd'), 'unknown');
  assert.equal((await logOf(response)).cost_usd, null);
  const warn = gw.logs.find((l) => l.event === 'price_unknown' && l.model === 'unknown');
  assert.ok(warn, 'a price_unknown warning at start');
  assert.equal(warn.target_model, 'ok');
  assert.ok(!gw.logs.some((l) => l.event === 'price_unknown' && l.model === 'priced'));
  const prices = gw.logs.find((l) => l.event === 'prices');
  assert.equal(prices.catalogue, '(built-in)'); // no prices.yaml next to the test's config
});

test('a stream carries its cost in the usage chunk', async () => {
  const stream = await client.chat.completions.create({ model: 'priced', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'hi' }] });
  let usage = null;
  for await (const c of stream) if (c.usage) usage = c.usage;
  // the fake's 3-chunk stream reports 11 in / 3 out: 11 × 2 + 3 × 10 = 52 per 1M
  assert.deepEqual(usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14, cost_usd: 0.000052 });
});

test('a stream cut before its usage is billed for what was produced, flagged estimated', async () => {
  const res = await fetch(`${gw.baseURL}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'cut', stream: true, messages: [{ role: 'user', content: 'hi' }] }) });
  assert.match(await res.text(), /stream_interrupted/);
  const log = await gw.waitForLog((l) => l.event === 'request' && l.model === 'cut');
  assert.equal(log.usage_estimated, true);
  assert.equal(log.completion_tokens, 2); // the two chunks sent before the reset
  assert.ok(log.prompt_tokens > 0);
  assert.equal(log.cost_usd, (log.prompt_tokens + 2) / 1e6);
});
