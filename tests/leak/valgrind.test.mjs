// A whole serve → traffic → SIGTERM cycle under valgrind (STRATUS_WRAPPER, set by
// scripts/run-tests valgrind): any leak or memory error makes valgrind exit 99.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFake } from '../fakes/openai.mjs';
import { startAnthropicFake } from '../fakes/anthropic.mjs';
import { startBedrockFake } from '../fakes/bedrock.mjs';
import { startGateway, config, waitFor } from '../integration/lib/gateway.mjs';

test('no leaks or memory errors across requests, failures, disconnects and shutdown', async () => {
  assert.ok(process.env.STRATUS_WRAPPER?.includes('valgrind'), 'run me through scripts/run-tests valgrind');
  const fake = await startFake();
  const anth = await startAnthropicFake({ apiKey: 'secret' });
  const bed = await startBedrockFake();
  const gw = await startGateway(config({
    backends: [{ name: 'up', url: fake.url, api_key: 'env:K' }, { name: 'dead', url: 'http://127.0.0.1:1/v1' },
      { name: 'claude', type: 'anthropic', url: anth.url, fields: { api_key: 'env:K' } },
      { name: 'aws', type: 'bedrock', url: bed.url, fields: { region: 'us-east-1' } }],
    models: [
      { name: 'claude', targets: [{ backend: 'claude', model: 'tool-call' }] },
      { name: 'claude-cut', targets: [{ backend: 'claude', model: 'reset-mid-stream' }] },
      { name: 'aws', retry: '{ retries: 1, backoff_ms: 1 }', targets: [{ backend: 'aws', model: 'fail-500' }, { backend: 'aws', model: 'tool-call' }] },
      { name: 'aws-crc', targets: [{ backend: 'aws', model: 'bad-crc' }] },
      { name: 'chat', targets: [{ backend: 'dead', model: 'x' }, { backend: 'up', model: 'fail-500' }, { backend: 'up', model: 'ok' }] },
      { name: 'slow', targets: [{ backend: 'up', model: 'slow-stream' }] },
      { name: 'reset', targets: [{ backend: 'up', model: 'reset-mid-stream' }] },
    ],
  }), { env: { K: 'secret', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' } });
  const post = (body) => fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const msg = [{ role: 'user', content: 'x' }];
  try {
    assert.equal((await post({ model: 'chat', messages: msg })).status, 200);
    const s = await post({ model: 'chat', stream: true, messages: msg });
    assert.match(await s.text(), /\[DONE\]/);
    assert.match(await (await post({ model: 'reset', stream: true, messages: msg })).text(), /stream_interrupted/);
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }];
    for (const model of ['claude', 'aws']) {
      assert.equal((await post({ model, messages: msg, tools })).status, 200);
      assert.match(await (await post({ model, stream: true, messages: msg, tools })).text(), /\[DONE\]/);
    }
    assert.match(await (await post({ model: 'claude-cut', stream: true, messages: msg })).text(), /stream_interrupted/);
    assert.match(await (await post({ model: 'aws-crc', stream: true, messages: msg })).text(), /stream_interrupted/);
    assert.equal((await post({ model: 'aws', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png' } }] }] })).status, 400);
    assert.equal((await post({ model: 'nope', messages: msg })).status, 404);
    assert.equal((await post('{bad')).status, 400);
    // Disconnect mid-stream, and leave one stream running into shutdown.
    const ac = new AbortController();
    const r = await fetch(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slow', stream: true, messages: msg }),
    });
    await r.body.getReader().read();
    ac.abort();
    await gw.waitForLog((l) => l.event === 'request' && l.status === 499, 30000);
    await (await fetch(`${gw.baseURL}/ready`)).text();
  } finally {
    await gw.stop('SIGTERM');
    await fake.close();
    await anth.close();
    await bed.close();
  }
  assert.equal(gw.exitCode, 0, `valgrind reported problems:\n${gw.stderr.split('\n').filter((l) => l.startsWith('==')).join('\n')}`);
  assert.ok(!/definitely lost: [1-9]/.test(gw.stderr));
});
