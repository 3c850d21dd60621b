// The fake cloud providers are only worth trusting if they reject what the real ones reject.
// These tests drive them directly (no gateway): the Bedrock fake must refuse a request whose
// SigV4 signature is wrong by one byte, and its event-stream must be what the AWS SDK's
// codec decodes (and refuses when a CRC is wrong); the Anthropic fake must insist on the key,
// the version header and max_tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startAnthropicFake } from '../fakes/anthropic.mjs';
import { startBedrockFake, signForTest, codec } from '../fakes/bedrock.mjs';
import { toUtf8 } from '@smithy/util-utf8';

let anth, bed;
before(async () => {
  anth = await startAnthropicFake({ apiKey: 'k' });
  bed = await startBedrockFake();
});
after(async () => {
  await anth?.close();
  await bed?.close();
});

const messages = [{ role: 'user', content: 'hello world' }];

test('anthropic fake: key, version and max_tokens are required', async () => {
  const post = (headers, body) => fetch(`${anth.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  let res = await post({ 'anthropic-version': '2023-06-01' }, { model: 'echo', max_tokens: 5, messages });
  assert.equal(res.status, 401);
  res = await post({ 'x-api-key': 'k' }, { model: 'echo', max_tokens: 5, messages });
  assert.equal(res.status, 400);
  res = await post({ 'x-api-key': 'k', 'anthropic-version': '2023-06-01' }, { model: 'echo', messages });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /max_tokens/);
  res = await post({ 'x-api-key': 'k', 'anthropic-version': '2023-06-01' }, { model: 'echo', max_tokens: 5, messages: [{ role: 'system', content: 'x' }] });
  assert.equal(res.status, 400);
  res = await post({ 'x-api-key': 'k', 'anthropic-version': '2023-06-01' }, { model: 'stream-3', max_tokens: 5, stream: true, messages });
  const types = (await res.text()).split('\n').filter((l) => l.startsWith('event: ')).map((l) => l.slice(7));
  assert.deepEqual(types, ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'content_block_delta',
    'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
});

async function bedrockPost(path, body, signWith = {}) {
  const url = `${bed.url}${path}`;
  const headers = await signForTest({ url, body, ...signWith });
  return { url, headers, send: (b = body) => fetch(url, { method: 'POST', headers, body: b }) };
}

test('bedrock fake: a correctly signed request is answered; one changed byte is refused', async () => {
  const body = JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'hello world' }] }] });
  const { send } = await bedrockPost('/model/echo/converse', body);
  let res = await send();
  assert.equal(res.status, 200);
  assert.equal((await res.json()).output.message.content[0].text, 'hello world');
  res = await send(body.replace('hello', 'jello'));
  assert.equal(res.status, 403);
  assert.match(res.headers.get('x-amzn-errortype'), /^InvalidSignatureException/);
  const wrong = await bedrockPost('/model/echo/converse', body, { secretAccessKey: 'nope' });
  res = await wrong.send();
  assert.equal(res.status, 403);
  const region = await bedrockPost('/model/echo/converse', body, { region: 'us-west-2' });
  assert.equal((await region.send()).status, 403);
  res = await fetch(`${bed.url}/model/echo/converse`, { method: 'POST', body });
  assert.equal(res.status, 403);
  assert.match(res.headers.get('x-amzn-errortype'), /^MissingAuthenticationTokenException/);
});

async function decodeStream(model) {
  const body = JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'hello world' }] }] });
  const { send } = await bedrockPost(`/model/${model}/converse-stream`, body);
  const res = await send();
  assert.equal(res.headers.get('content-type'), 'application/vnd.amazon.eventstream');
  let buf = Buffer.from(await res.arrayBuffer());
  const events = [];
  while (buf.length >= 4) {
    const len = buf.readUInt32BE(0);
    events.push(codec.decode(buf.subarray(0, len))); // throws on a bad CRC
    buf = buf.subarray(len);
  }
  return events.map((e) => [e.headers[':event-type']?.value ?? e.headers[':exception-type']?.value, JSON.parse(toUtf8(e.body))]);
}

test('bedrock fake: ConverseStream decodes with the AWS codec; a bad CRC does not', async () => {
  const events = await decodeStream('stream-2');
  assert.deepEqual(events.map((e) => e[0]), ['messageStart', 'contentBlockDelta', 'contentBlockDelta', 'contentBlockStop', 'messageStop', 'metadata']);
  assert.deepEqual(events.at(-1)[1].usage, { inputTokens: 2, outputTokens: 2, totalTokens: 4 });
  await assert.rejects(decodeStream('bad-crc'), /checksum/i);
});

test('fakes: a malformed body (null message / block) gets a 400 naming it, not a crash', async () => {
  const res = await fetch(`${anth.url}/v1/messages`, { method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'echo', max_tokens: 5, messages: [{ role: 'user', content: [null] }] }) });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /messages\.0\.content\.0/);
  for (const bad of [[null], [{ role: 'user', content: [{ toolUse: null }] }]]) {
    const { send } = await bedrockPost('/model/echo/converse', JSON.stringify({ messages: bad }));
    const r = await send();
    assert.equal(r.status, 400);
    assert.match(r.headers.get('x-amzn-errortype'), /^ValidationException/);
    assert.match((await r.json()).message, /^messages\.0/);
  }
});
