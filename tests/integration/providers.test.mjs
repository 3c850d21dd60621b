// The anthropic and bedrock providers through the real gateway, driven by the official
// openai SDK: translation both ways (system, images, tools, stop, max_tokens), streaming
// (Anthropic SSE and Bedrock event-stream → OpenAI chunks, usage), and the fault matrix
// (500, 529, 429 + Retry-After, 400, reset mid-stream, slow first byte, hang, garbled body,
// bad CRC, error events). The fakes speak the real wire formats and check what they get; the
// Bedrock fake verifies every SigV4 signature with @smithy/signature-v4.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startAnthropicFake } from '../fakes/anthropic.mjs';
import { startBedrockFake } from '../fakes/bedrock.mjs';
import { startGateway, config, readSSE, SCALE } from './lib/gateway.mjs';

const ANTHROPIC_KEY = 'sk-ant-test-123';
const AWS = { accessKeyId: 'AKIDSTRATUSTEST', secretAccessKey: 'stratus/test/secret+key', sessionToken: 'session-token-xyz' };
let anth, bed, oa, gw, client;

const claude = (model) => ({ backend: 'claude', model });
const aws = (model) => ({ backend: 'aws', model });
const backup = { backend: 'oa', model: 'ok' };

before(async () => {
  anth = await startAnthropicFake({ apiKey: ANTHROPIC_KEY });
  bed = await startBedrockFake({ region: 'eu-central-1', ...AWS });
  oa = await startFake();
  const models = [];
  for (const m of ['echo', 'tool-call', 'describe', 'stream-5', 'fail-400', 'reset-mid-stream', 'stream-error', 'garbled'])
    models.push({ name: `a-${m}`, targets: [claude(m)] });
  for (const m of ['echo', 'tool-call', 'describe', 'stream-5', 'fail-400', 'reset-mid-stream', 'bad-crc', 'stream-exception', 'garbled',
    'anthropic.claude-3-haiku-20240307-v1:0'])
    models.push({ name: `b-${m}`, targets: [aws(m)] });
  for (const m of ['fail-500', 'fail-529', 'fail-429', 'hang', 'slow-first-byte-5000', 'garbled', 'reset-mid-stream'])
    models.push({ name: `a-over-${m}`, targets: [{ backend: m.startsWith('slow') ? 'claude-fbt' : m === 'hang' ? 'claude-short' : 'claude', model: m }, backup] });
  for (const m of ['fail-500', 'fail-503', 'fail-429', 'hang', 'garbled', 'reset-mid-stream', 'bad-crc'])
    models.push({ name: `b-over-${m}`, targets: [{ backend: m === 'hang' ? 'aws-short' : 'aws', model: m }, backup] });
  models.push({ name: 'mixed', targets: [claude('echo'), aws('echo'), { backend: 'oa', model: 'ok' }] });
  models.push({ name: 'bad-creds', targets: [{ backend: 'aws-wrong', model: 'echo' }] });
  models.push({ name: 'cross', targets: [claude('fail-529'), aws('echo')] });
  const anthropicFields = (extra = {}) => ({ api_key: 'env:TEST_ANTHROPIC_KEY', max_tokens: 64, ...extra });
  const bedrockFields = { region: 'eu-central-1' };
  gw = await startGateway(config({
    backends: [
      { name: 'claude', type: 'anthropic', url: anth.url, fields: anthropicFields() },
      { name: 'claude-fbt', type: 'anthropic', url: anth.url, first_byte_timeout_ms: 300, fields: anthropicFields() },
      { name: 'claude-short', type: 'anthropic', url: anth.url, timeout_ms: Math.round(500 * SCALE), fields: anthropicFields() },
      { name: 'aws', type: 'bedrock', url: bed.url, fields: bedrockFields },
      { name: 'aws-short', type: 'bedrock', url: bed.url, timeout_ms: Math.round(500 * SCALE), fields: bedrockFields },
      { name: 'aws-wrong', type: 'bedrock', url: bed.url, fields: { region: 'eu-central-1', aws_access_key_id: 'env:TEST_AK', aws_secret_access_key: 'env:TEST_WRONG_SECRET', aws_session_token: 'env:AWS_SESSION_TOKEN' } },
      { name: 'oa', url: oa.url },
    ],
    models,
  }), { env: {
    TEST_ANTHROPIC_KEY: ANTHROPIC_KEY, AWS_ACCESS_KEY_ID: AWS.accessKeyId, AWS_SECRET_ACCESS_KEY: AWS.secretAccessKey,
    AWS_SESSION_TOKEN: AWS.sessionToken, TEST_AK: AWS.accessKeyId, TEST_WRONG_SECRET: 'not-the-secret',
  } });
  client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: 'x', maxRetries: 0 });
});

after(async () => {
  await gw?.stop();
  await anth?.close();
  await bed?.close();
  await oa?.close();
});

const user = (content) => [{ role: 'user', content }];
const last = (fake) => fake.requests[fake.requests.length - 1];

async function post(body) {
  return fetch(`${gw.baseURL}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

async function streamText(model, extra = {}) {
  const stream = await client.chat.completions.create({ model, stream: true, messages: user('hello there'), ...extra });
  let text = '', finish = null, usage = null, chunks = 0;
  const calls = [];
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    text += ch.delta?.content ?? '';
    if (ch.finish_reason) finish = ch.finish_reason;
    for (const tc of ch.delta?.tool_calls ?? []) {
      calls[tc.index] ??= { id: '', name: '', args: '' };
      if (tc.id) calls[tc.index].id = tc.id;
      if (tc.function?.name) calls[tc.index].name = tc.function.name;
      calls[tc.index].args += tc.function?.arguments ?? '';
    }
  }
  return { text, finish, usage, chunks, calls };
}

// ---- Anthropic --------------------------------------------------------------------------

test('anthropic: chat is translated both ways, with the key, version and default max_tokens', async () => {
  const { data, response } = await client.chat.completions.create({
    model: 'a-echo', temperature: 0.3, top_p: 0.9, user: 'user-7',
    messages: [{ role: 'system', content: 'Be brief please' }, { role: 'user', content: 'hello from the client' }],
  }).withResponse();
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(data.choices[0].message.content, 'hello from the client');
  assert.equal(data.choices[0].finish_reason, 'stop');
  assert.deepEqual(data.usage, { prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 });
  assert.equal(response.headers.get('x-stratus-backend'), 'claude');
  const rec = last(anth);
  assert.equal(rec.headers['x-api-key'], ANTHROPIC_KEY);
  assert.equal(rec.headers['anthropic-version'], '2023-06-01');
  assert.deepEqual(rec.body, {
    model: 'echo', max_tokens: 64, temperature: 0.3, top_p: 0.9, metadata: { user_id: 'user-7' },
    system: [{ type: 'text', text: 'Be brief please' }],
    messages: [{ role: 'user', content: [{ type: 'text', text: 'hello from the client' }] }],
  });
});

test('anthropic: max_tokens and stop sequences map to length / stop', async () => {
  let r = await client.chat.completions.create({ model: 'a-echo', max_tokens: 2, messages: user('one two three four') });
  assert.equal(r.choices[0].message.content, 'one two');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(last(anth).body.max_tokens, 2);
  r = await client.chat.completions.create({ model: 'a-echo', stop: ['three'], messages: user('one two three four') });
  assert.equal(r.choices[0].message.content, 'one two');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.deepEqual(last(anth).body.stop_sequences, ['three']);
});

test('anthropic: images (base64 data URL and https URL) become image blocks', async () => {
  const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
  const r = await client.chat.completions.create({ model: 'a-describe', messages: user([
    { type: 'text', text: 'What are these?' },
    { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
    { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
  ]) });
  assert.equal(r.choices[0].message.content, 'user:text user:image:base64:image/png user:image:url:https://example.com/cat.jpg');
  assert.deepEqual(last(anth).body.messages[0].content[1], { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } });
});

const weatherTool = { type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
  parameters: { type: 'object', properties: { location: { type: 'string' }, unit: { type: 'string' } }, required: ['location'] } } };

test('anthropic: tools and tool calls both ways', async () => {
  const r = await client.chat.completions.create({ model: 'a-tool-call', tools: [weatherTool], tool_choice: 'required', messages: user('weather in Paris?') });
  const msg = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.content, 'Checking.');
  assert.equal(msg.tool_calls.length, 1);
  assert.equal(msg.tool_calls[0].id, 'toolu_01');
  assert.equal(msg.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { location: 'Paris', unit: 'celsius' });
  assert.deepEqual(last(anth).body.tools, [{ name: 'get_weather', description: 'Weather for a city', input_schema: weatherTool.function.parameters }]);
  assert.deepEqual(last(anth).body.tool_choice, { type: 'any' });
  // The follow-up carries the call and its result back.
  const r2 = await client.chat.completions.create({ model: 'a-echo', tools: [weatherTool], messages: [
    { role: 'user', content: 'weather in Paris?' }, msg,
    { role: 'tool', tool_call_id: 'toolu_01', content: '22 degrees and sunny' },
    { role: 'user', content: 'thanks' },
  ] });
  assert.equal(r2.choices[0].message.content, 'thanks');
  assert.deepEqual(last(anth).body.messages, [
    { role: 'user', content: [{ type: 'text', text: 'weather in Paris?' }] },
    { role: 'assistant', content: [{ type: 'text', text: 'Checking.' }, { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { location: 'Paris', unit: 'celsius' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: '22 degrees and sunny' }, { type: 'text', text: 'thanks' }] },
  ]);
});

test('anthropic: streams become OpenAI chunks with usage and [DONE]', async () => {
  const s = await streamText('a-stream-5', { stream_options: { include_usage: true } });
  assert.equal(s.text, 'w1 w2 w3 w4 w5');
  assert.equal(s.finish, 'stop');
  assert.deepEqual(s.usage, { prompt_tokens: 2, completion_tokens: 5, total_tokens: 7, cost_usd: null });
  assert.equal(last(anth).body.stream, true);
  const res = await post({ model: 'a-stream-5', stream: true, messages: user('x') });
  const events = await readSSE(res);
  assert.equal(events.at(-1), '[DONE]');
  assert.ok(!events.some((e) => e !== '[DONE]' && JSON.parse(e).usage), 'no usage chunk unless asked');
});

test('anthropic: streamed tool calls arrive as tool_calls deltas', async () => {
  const s = await streamText('a-tool-call', { tools: [weatherTool] });
  assert.equal(s.text, 'Checking.');
  assert.equal(s.finish, 'tool_calls');
  assert.equal(s.calls.length, 1);
  assert.equal(s.calls[0].id, 'toolu_01');
  assert.equal(s.calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(s.calls[0].args), { location: 'Paris', unit: 'celsius' });
});

test('anthropic: a 400 passes through as an OpenAI error naming the backend', async () => {
  const res = await post({ model: 'a-fail-400', messages: user('x') });
  assert.equal(res.status, 400);
  const { error } = await res.json();
  assert.equal(error.code, 'upstream_rejected');
  assert.match(error.message, /backend 'claude' rejected the request \(HTTP 400\): invalid_request_error: bad thing/);
});

for (const m of ['fail-500', 'fail-529', 'fail-429', 'hang', 'slow-first-byte-5000', 'garbled']) {
  test(`anthropic: ${m} fails over to the next target`, async () => {
    const t0 = Date.now();
    const { data, response } = await client.chat.completions.create({ model: `a-over-${m}`, messages: user('x') }).withResponse();
    assert.equal(response.headers.get('x-stratus-backend'), 'oa');
    assert.equal(data.choices[0].message.content, 'Hello from the fake');
    if (m.startsWith('slow')) assert.ok(Date.now() - t0 < 3000 * SCALE, 'first-byte timeout, not the slow answer');
    const log = await gw.waitForLog((l) => l.event === 'request' && l.id === response.headers.get('x-request-id'));
    assert.equal(log.attempts, 2);
  });
}

test('anthropic: a garbled stream fails over while nothing was sent', async () => {
  const s = await streamText('a-over-garbled');
  assert.match(s.text, /tok0/);
});

test('anthropic: a stream cut mid-way ends with an SSE error event and no [DONE]', async () => {
  const res = await post({ model: 'a-reset-mid-stream', stream: true, messages: user('x') });
  assert.equal(res.status, 200);
  const events = await readSSE(res);
  assert.notEqual(events.at(-1), '[DONE]');
  const err = JSON.parse(events.at(-1)).error;
  assert.equal(err.code, 'stream_interrupted');
  const texts = events.slice(0, -1).map((e) => JSON.parse(e).choices[0]?.delta?.content ?? '').join('');
  assert.equal(texts, 'w1 w2');
  const log = await gw.waitForLog((l) => l.event === 'request' && l.model === 'a-reset-mid-stream');
  assert.equal(log.usage_estimated, true);
  assert.ok(log.completion_tokens >= 2);
});

test('anthropic: an error event mid-stream (overloaded) ends the stream with it', async () => {
  const res = await post({ model: 'a-stream-error', stream: true, messages: user('x') });
  const events = await readSSE(res);
  const err = JSON.parse(events.at(-1)).error;
  assert.equal(err.code, 'stream_interrupted');
  assert.match(err.message, /overloaded_error: Overloaded/);
});

test('anthropic 529 then bedrock: failover across providers', async () => {
  const { data, response } = await client.chat.completions.create({ model: 'cross', messages: user('across providers') }).withResponse();
  assert.equal(response.headers.get('x-stratus-backend'), 'aws');
  assert.equal(data.choices[0].message.content, 'across providers');
  assert.match(response.headers.get('x-stratus-route'), /after 1 failed attempt/);
});

// ---- Bedrock ----------------------------------------------------------------------------

test('bedrock: Converse is signed (SigV4 with session token) and translated both ways', async () => {
  const before = bed.requests.length;
  const r = await client.chat.completions.create({ model: 'b-echo', max_tokens: 20, temperature: 0.5, stop: 'never',
    messages: [{ role: 'system', content: 'Be brief' }, { role: 'user', content: 'hi bedrock' }] });
  assert.equal(r.choices[0].message.content, 'hi bedrock');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.deepEqual(r.usage, { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
  const rec = bed.requests[before];
  assert.equal(rec.signatureOk, true);
  assert.equal(rec.path, '/model/echo/converse');
  assert.equal(rec.headers['x-amz-security-token'], AWS.sessionToken);
  assert.match(rec.headers.authorization, /Credential=AKIDSTRATUSTEST\/\d{8}\/eu-central-1\/bedrock\/aws4_request/);
  assert.deepEqual(rec.body, {
    system: [{ text: 'Be brief' }],
    messages: [{ role: 'user', content: [{ text: 'hi bedrock' }] }],
    inferenceConfig: { maxTokens: 20, temperature: 0.5, stopSequences: ['never'] },
  });
});

test('bedrock: a model id with ":" is percent-encoded in the path and still signs', async () => {
  const r = await client.chat.completions.create({ model: 'b-anthropic.claude-3-haiku-20240307-v1:0', messages: user('colon ok') });
  assert.equal(r.choices[0].message.content, 'colon ok');
  const rec = last(bed);
  assert.equal(rec.path, '/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse');
  assert.equal(rec.signatureOk, true);
});

test('bedrock: ConverseStream event-stream → OpenAI chunks with usage', async () => {
  const s = await streamText('b-stream-5', { stream_options: { include_usage: true } });
  assert.equal(s.text, 'w1 w2 w3 w4 w5');
  assert.equal(s.finish, 'stop');
  assert.deepEqual(s.usage, { prompt_tokens: 2, completion_tokens: 5, total_tokens: 7, cost_usd: null });
  assert.equal(last(bed).path, '/model/stream-5/converse-stream');
  assert.equal(last(bed).signatureOk, true);
});

test('bedrock: tools, tool results and streamed tool calls', async () => {
  const r = await client.chat.completions.create({ model: 'b-tool-call', tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_weather' } }, messages: user('weather?') });
  const msg = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.tool_calls[0].id, 'tooluse_01');
  assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { location: 'Paris', unit: 'celsius' });
  assert.deepEqual(last(bed).body.toolConfig, { tools: [{ toolSpec: { name: 'get_weather', description: 'Weather for a city',
    inputSchema: { json: weatherTool.function.parameters } } }], toolChoice: { tool: { name: 'get_weather' } } });
  await client.chat.completions.create({ model: 'b-echo', tools: [weatherTool], messages: [
    { role: 'user', content: 'weather?' }, msg, { role: 'tool', tool_call_id: 'tooluse_01', content: 'sunny' }] });
  assert.deepEqual(last(bed).body.messages.slice(1), [
    { role: 'assistant', content: [{ text: 'Checking.' }, { toolUse: { toolUseId: 'tooluse_01', name: 'get_weather', input: { location: 'Paris', unit: 'celsius' } } }] },
    { role: 'user', content: [{ toolResult: { toolUseId: 'tooluse_01', content: [{ text: 'sunny' }] } }] },
  ]);
  const s = await streamText('b-tool-call', { tools: [weatherTool] });
  assert.equal(s.finish, 'tool_calls');
  assert.equal(s.calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(s.calls[0].args), { location: 'Paris', unit: 'celsius' });
});

test('bedrock: inline images are sent as bytes; an image URL it cannot fetch is a 400', async () => {
  const r = await client.chat.completions.create({ model: 'b-describe', messages: user([
    { type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AAQ' } }]) });
  assert.equal(r.choices[0].message.content, 'user:text user:image:jpeg');
  assert.deepEqual(last(bed).body.messages[0].content[1], { image: { format: 'jpeg', source: { bytes: '/9j/4AAQ' } } });
  const res = await post({ model: 'b-describe', messages: user([{ type: 'image_url', image_url: { url: 'https://example.com/x.png' } }]) });
  assert.equal(res.status, 400);
  const { error } = await res.json();
  assert.match(error.message, /messages\[0\]: Bedrock takes images inline only/);
});

test('bedrock: a 400 passes through; a bad signature is a 502 upstream_auth_failed naming the backend', async () => {
  let res = await post({ model: 'b-fail-400', messages: user('x') });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /backend 'aws' rejected the request \(HTTP 400\): bad thing/);
  res = await post({ model: 'bad-creds', messages: user('x') });
  assert.equal(res.status, 502); // the gateway's credentials failed, not the client's
  const { error } = await res.json();
  assert.equal(error.code, 'upstream_auth_failed');
  assert.match(error.message, /backend 'aws-wrong' refused the gateway's credentials \(HTTP 403\)/);
  assert.equal(last(bed).signatureOk, false);
});

for (const m of ['fail-500', 'fail-503', 'fail-429', 'hang', 'garbled']) {
  test(`bedrock: ${m} fails over to the next target`, async () => {
    const { data, response } = await client.chat.completions.create({ model: `b-over-${m}`, messages: user('x') }).withResponse();
    assert.equal(response.headers.get('x-stratus-backend'), 'oa');
    assert.equal(data.choices[0].message.content, 'Hello from the fake');
  });
}

test('bedrock: a garbled stream fails over before anything was sent', async () => {
  const s = await streamText('b-over-garbled');
  assert.match(s.text, /tok0/);
});

for (const [m, why] of [['bad-crc', /CRC/], ['stream-exception', /throttlingException: Too many tokens/], ['reset-mid-stream', /broke|ended/]]) {
  test(`bedrock: ${m} mid-stream ends with an SSE error event, no [DONE]`, async () => {
    const res = await post({ model: `b-${m}`, stream: true, messages: user('x') });
    assert.equal(res.status, 200);
    const events = await readSSE(res);
    assert.notEqual(events.at(-1), '[DONE]');
    const err = JSON.parse(events.at(-1)).error;
    assert.equal(err.code, 'stream_interrupted');
    assert.match(err.message, why);
    const text = events.slice(0, -1).map((e) => JSON.parse(e).choices[0]?.delta?.content ?? '').join('');
    assert.ok(text.startsWith('w1'), text);
  });
}

// ---- capability ---------------------------------------------------------------------------

test('embeddings skip chat-only providers in a mixed group', async () => {
  const r = await client.embeddings.create({ model: 'mixed', input: 'hello' }).withResponse();
  assert.equal(r.response.headers.get('x-stratus-backend'), 'oa');
  const res = await fetch(`${gw.baseURL}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'a-echo', input: 'x' }) });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.code, 'unsupported_endpoint');
});
