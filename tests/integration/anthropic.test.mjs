// The Anthropic Messages surface (POST /v1/messages, /v1/messages/count_tokens) driven by the
// official @anthropic-ai/sdk with only baseURL changed, against a fake OpenAI-compatible
// upstream (and a small inline one that answers with tool calls) and the real local engine
// (the tiny demo model): whole answers, the event sequence of streams, tools both ways,
// system blocks, stop sequences, images, count_tokens, and every error in Anthropic's shape.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { startAnthropicFake } from '../fakes/anthropic.mjs';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, waitFor, SCALE } from './lib/gateway.mjs';

const MK = 'test-master-key-anthropic-0123';
const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
let fake, tools, ant, gw, client;

// An OpenAI-compatible upstream that calls a tool: whole or streamed (text first, then the
// call's arguments in two pieces), as OpenAI does. With `stop` in the request it ends the
// answer on the first stop string and names it in `stop_reason`, as vLLM does.
async function startToolFake() {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const part of req) raw += part;
    const body = JSON.parse(raw);
    requests.push(body);
    const call = { id: 'call_abc', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } };
    const usage = { prompt_tokens: 21, completion_tokens: 9, total_tokens: 30 };
    if (body.stop) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'chatcmpl-stop', object: 'chat.completion', created: 1, model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'one two' }, finish_reason: 'stop', stop_reason: body.stop[0] }],
        usage }));
      return;
    }
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'chatcmpl-tool', object: 'chat.completion', created: 1, model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'Let me check.', tool_calls: [call] }, finish_reason: 'tool_calls' }],
        usage }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const chunk = (delta, finish = null) => res.write(`data: ${JSON.stringify({ id: 'chatcmpl-tool', object: 'chat.completion.chunk',
      created: 1, model: body.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`);
    chunk({ role: 'assistant', content: '' });
    chunk({ content: 'Let me check.' });
    chunk({ tool_calls: [{ index: 0, id: 'call_abc', type: 'function', function: { name: 'get_weather', arguments: '' } }] });
    chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] });
    chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] });
    chunk({}, 'tool_calls');
    res.write(`data: ${JSON.stringify({ id: 'chatcmpl-tool', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [], usage })}\n\n`);
    res.end('data: [DONE]\n\n');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/v1`, requests, close: () => new Promise((r) => server.close(r)) };
}

before(async () => {
  assert.ok(existsSync(MODEL), `${MODEL} is missing: run make models`);
  fake = await startFake();
  tools = await startToolFake();
  ant = await startAnthropicFake();
  const y = `log: { requests: true }\nauth: { master_key: env:MK, refresh_ms: 200 }\nbackends:\n` +
    `  - { name: oa, type: openai, base_url: "${fake.url}", timeout_ms: ${10000 * SCALE} }\n` +
    `  - { name: tf, type: openai, base_url: "${tools.url}", timeout_ms: ${10000 * SCALE} }\n` +
    `  - { name: local, type: local, model_path: "${MODEL}", parallel: 2, threads: 2, ctx_size: 512 }\n` +
    `  - { name: ant, type: anthropic, base_url: "${ant.url}", api_key: "env:ANT_KEY", timeout_ms: ${10000 * SCALE} }\n` +
    'models:\n' +
    '  - { name: fake, retry: { retries: 0 }, targets: [ { backend: oa, model: echo } ] }\n' +
    '  - { name: fake-stream, retry: { retries: 0 }, targets: [ { backend: oa, model: stream-3 } ] }\n' +
    '  - { name: busy, retry: { retries: 0 }, targets: [ { backend: oa, model: fail-429 } ] }\n' +
    '  - { name: broken, retry: { retries: 0 }, targets: [ { backend: oa, model: fail-500 } ] }\n' +
    '  - { name: cut, retry: { retries: 0 }, targets: [ { backend: oa, model: reset-mid-stream } ] }\n' +
    '  - { name: tools, retry: { retries: 0 }, targets: [ { backend: tf, model: tool-model } ] }\n' +
    '  - { name: tiny, targets: [ { backend: local, model: tiny } ] }\n' +
    '  - { name: claude, retry: { retries: 0 }, targets: [ { backend: ant, model: claude-echo } ] }\n' +
    '  - { name: claude-or-openai, retry: { retries: 0 }, targets: [ { backend: ant, model: fail-500 }, { backend: oa, model: echo } ] }\n';
  gw = await startGateway(y, { env: { MK, ANT_KEY: 'test-anthropic-key' } });
  client = new Anthropic({ baseURL: gw.baseURL, apiKey: MK, maxRetries: 0, timeout: 60000 * SCALE });
  await waitFor(async () => (await fetch(`${gw.baseURL}/ready`)).status === 200, { timeout: 30000, what: 'the local model' });
});

after(async () => {
  await gw?.stop();
  await fake?.close();
  await tools?.close();
  await ant?.close();
});

const last = (f) => f.requests[f.requests.length - 1];
const user = (content) => [{ role: 'user', content }];

// Every event of a stream, by type, and the SDK's final message.
async function streamed(params) {
  const stream = client.messages.stream(params);
  const events = [];
  for await (const ev of stream) events.push(ev);
  return { events, types: events.map((e) => e.type), final: await stream.finalMessage() };
}

const post = (path, body, headers = { 'x-api-key': MK }) => fetch(`${gw.baseURL}${path}`, {
  method: 'POST', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

async function rejects(promise, Cls, status, type, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, status);
    assert.equal(e.type, type);
    assert.equal(e.error?.type, 'error');
    if (pattern) assert.match(e.apiMessage, pattern);
    return true;
  });
}

// ---- the fake OpenAI upstream ---------------------------------------------------------------

test('messages.create: a Message with text, stop reason, usage; the upstream gets the OpenAI request', async () => {
  const { data, response } = await client.messages.create({
    model: 'fake', max_tokens: 50, temperature: 0.5, top_p: 0.9, top_k: 40, metadata: { user_id: 'u-42' },
    stop_sequences: ['STOP', 'END'],
    system: [{ type: 'text', text: 'Be brief.' }, { type: 'text', text: 'Be kind.' }],
    messages: [{ role: 'user', content: 'first' }, { role: 'assistant', content: 'ok' },
      { role: 'user', content: [{ type: 'text', text: 'hello from the sdk' }] }],
  }).withResponse();
  assert.match(data.id, /^msg_/);
  assert.equal(data.type, 'message');
  assert.equal(data.role, 'assistant');
  assert.equal(data.model, 'fake', 'the model the client asked for');
  assert.deepEqual(data.content, [{ type: 'text', text: 'hello from the sdk' }]);
  assert.equal(data.stop_reason, 'end_turn');
  assert.equal(data.stop_sequence, null);
  assert.deepEqual(data.usage, { input_tokens: 11, output_tokens: 5 });
  assert.equal(response.headers.get('x-stratus-backend'), 'oa');
  assert.equal(response.headers.get('x-stratus-model'), 'echo');
  assert.ok(Number(response.headers.get('x-stratus-cost-usd')) >= 0 || response.headers.get('x-stratus-cost-usd') === 'unknown');
  const sent = last(fake).body;
  assert.equal(sent.model, 'echo');
  assert.equal(sent.max_tokens, 50);
  assert.equal(sent.temperature, 0.5);
  assert.equal(sent.top_p, 0.9);
  assert.equal(sent.user, 'u-42');
  assert.equal(sent.top_k, undefined, 'top_k has no OpenAI equivalent: dropped');
  assert.deepEqual(sent.stop, ['STOP', 'END']);
  assert.deepEqual(sent.messages, [
    { role: 'system', content: [{ type: 'text', text: 'Be brief.' }, { type: 'text', text: 'Be kind.' }] },
    { role: 'user', content: 'first' }, { role: 'assistant', content: 'ok' },
    { role: 'user', content: 'hello from the sdk' },
  ]);
});

test('messages.stream: the whole event sequence, and the final message with real usage', async () => {
  const { types, events, final } = await streamed({ model: 'fake-stream', max_tokens: 20, messages: user('hi') });
  assert.deepEqual(types, ['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta',
    'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(events[0].message.model, 'fake-stream');
  assert.match(events[0].message.id, /^msg_/);
  assert.deepEqual(events[1].content_block, { type: 'text', text: '' });
  assert.ok(events.slice(2, 5).every((e) => e.index === 0 && e.delta.type === 'text_delta'));
  assert.equal(final.content[0].text, 'tok0 tok1 tok2 ');
  assert.equal(final.stop_reason, 'end_turn');
  assert.equal(final.usage.input_tokens, 11, 'message_delta carries the prompt tokens');
  assert.equal(final.usage.output_tokens, 3);
  assert.equal(last(fake).body.stream, true);
});

test('system as a string, and base64 and URL images become OpenAI image parts', async () => {
  const png = Buffer.from('89504e470d0a1a0a', 'hex').toString('base64');
  await client.messages.create({
    model: 'fake', max_tokens: 10, system: 'You are terse.',
    messages: user([
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
      { type: 'text', text: 'What is this?' },
    ]),
  });
  assert.deepEqual(last(fake).body.messages, [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: [
      { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
      { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
      { type: 'text', text: 'What is this?' },
    ] },
  ]);
});

const weather = { name: 'get_weather', description: 'Weather for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } };

test('tools: a tool_use answer (whole), and the tool definition and choice the upstream got', async () => {
  const m = await client.messages.create({
    model: 'tools', max_tokens: 100, tools: [weather],
    tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true },
    messages: user('Weather in Paris?'),
  });
  assert.equal(m.stop_reason, 'tool_use');
  assert.deepEqual(m.content, [
    { type: 'text', text: 'Let me check.' },
    { type: 'tool_use', id: 'call_abc', name: 'get_weather', input: { city: 'Paris' } },
  ]);
  assert.deepEqual(m.usage, { input_tokens: 21, output_tokens: 9 });
  const sent = last(tools);
  assert.deepEqual(sent.tools, [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city',
    parameters: weather.input_schema } }]);
  assert.deepEqual(sent.tool_choice, { type: 'function', function: { name: 'get_weather' } });
  assert.equal(sent.parallel_tool_calls, false);
  for (const [choice, want] of [[{ type: 'auto' }, 'auto'], [{ type: 'any' }, 'required'], [{ type: 'none' }, 'none']]) {
    await client.messages.create({ model: 'tools', max_tokens: 5, tools: [weather], tool_choice: choice, messages: user('x') });
    assert.equal(last(tools).tool_choice, want);
  }
});

test('tools: the tool_use / tool_result round trip becomes tool_calls and a tool message', async () => {
  await client.messages.create({
    model: 'tools', max_tokens: 100, tools: [weather],
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: [{ type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '18C, sunny' }] },
        { type: 'text', text: 'Thanks!' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_2', name: 'get_weather', input: { city: 'Oslo' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_2', content: 'no such city', is_error: true }] },
    ],
  });
  assert.deepEqual(last(tools).messages, [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: 'Checking.', tool_calls: [{ id: 'toolu_1', type: 'function',
      function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
    { role: 'tool', tool_call_id: 'toolu_1', content: '18C, sunny' },
    { role: 'user', content: 'Thanks!' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_2', type: 'function',
      function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
    { role: 'tool', tool_call_id: 'toolu_2', content: 'Error: no such city' },
  ]);
});

test('tools streamed: a text block, then a tool_use block filled by input_json_delta', async () => {
  const { types, events, final } = await streamed({ model: 'tools', max_tokens: 100, tools: [weather], messages: user('Paris?') });
  assert.deepEqual(types, ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop',
    'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  assert.deepEqual(events[4].content_block, { type: 'tool_use', id: 'call_abc', name: 'get_weather', input: {} });
  assert.equal(events[4].index, 1);
  assert.deepEqual(events.filter((e) => e.delta?.type === 'input_json_delta').map((e) => e.delta.partial_json), ['{"city":', '"Paris"}']);
  assert.equal(final.stop_reason, 'tool_use');
  assert.deepEqual(final.content, [{ type: 'text', text: 'Let me check.' },
    { type: 'tool_use', id: 'call_abc', name: 'get_weather', input: { city: 'Paris' } }]);
  assert.deepEqual(final.usage, { input_tokens: 21, output_tokens: 9 });
});

test('stop_sequences: a target that names the matched stop gives stop_reason stop_sequence', async () => {
  const m = await client.messages.create({ model: 'tools', max_tokens: 20, stop_sequences: ['three'], messages: user('count') });
  assert.equal(m.stop_reason, 'stop_sequence');
  assert.equal(m.stop_sequence, 'three');
  assert.deepEqual(last(tools).stop, ['three']);
});

test('count_tokens: an estimate over the text (about 4 bytes a token); unknown model 404', async () => {
  const r = await client.messages.countTokens({ model: 'fake', system: 'abcd', messages: user('12345678') });
  assert.deepEqual(r, { input_tokens: 3 }); // 12 bytes of text
  const withTools = await client.messages.countTokens({ model: 'fake', tools: [weather], messages: user('12345678') });
  assert.ok(withTools.input_tokens > 2 + 20, 'tool definitions count');
  await rejects(client.messages.countTokens({ model: 'nope', messages: user('x') }), Anthropic.NotFoundError, 404, 'not_found_error', /nope/);
  await rejects(client.messages.countTokens({ model: 'fake', max_tokens: 5, messages: user('x') }), Anthropic.BadRequestError, 400,
    'invalid_request_error', /^max_tokens: Extra inputs are not permitted/);
  const anon = new Anthropic({ baseURL: gw.baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  await rejects(anon.messages.countTokens({ model: 'fake', messages: user('x') }), Anthropic.AuthenticationError, 401, 'authentication_error');
});

// ---- errors --------------------------------------------------------------------------------

test('bad requests: 400 invalid_request_error naming the field, as Anthropic words it', async () => {
  await rejects(client.messages.create({ model: 'fake', messages: user('hi') }), Anthropic.BadRequestError, 400,
    'invalid_request_error', /^max_tokens: Field required/);
  await rejects(client.messages.create({ model: 'fake', max_tokens: 5, messages: user('hi'), frobnicate: 1 }),
    Anthropic.BadRequestError, 400, 'invalid_request_error', /^frobnicate: Extra inputs are not permitted/);
  await rejects(client.messages.create({ model: 'fake', max_tokens: 5, messages: [{ role: 'user', content: 7 }] }),
    Anthropic.BadRequestError, 400, 'invalid_request_error', /^messages\.0\.content: /);
  await rejects(client.messages.create({ model: 'fake', max_tokens: 5, messages: [{ role: 'system', content: 'x' }] }),
    Anthropic.BadRequestError, 400, 'invalid_request_error', /^messages\.0\.role: /);
  await rejects(client.messages.create({ model: 'fake', max_tokens: 5, temperature: 1.5, messages: user('x') }),
    Anthropic.BadRequestError, 400, 'invalid_request_error', /^temperature: /);
  await rejects(client.messages.create({ model: 'fake', max_tokens: 5, messages: user([{ type: 'document', source: {} }]) }),
    Anthropic.BadRequestError, 400, 'invalid_request_error', /^messages\.0\.content\.0\.type: 'document'/);
  await rejects(client.messages.create({ model: 'fake', max_tokens: 5, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: user('x') }),
    Anthropic.BadRequestError, 400, 'invalid_request_error', /^thinking: /);
  const notJson = await post('/v1/messages', '{"model":');
  assert.equal(notJson.status, 400);
  assert.equal((await notJson.json()).error.type, 'invalid_request_error');
});

test('credentials: bad key 401 in Anthropic shape; Bearer works; two different keys 400; OpenAI routes unchanged', async () => {
  const bad = new Anthropic({ baseURL: gw.baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  await rejects(bad.messages.create({ model: 'fake', max_tokens: 5, messages: user('x') }), Anthropic.AuthenticationError, 401,
    'authentication_error');
  const none = await post('/v1/messages', { model: 'fake', max_tokens: 5, messages: user('x') }, {});
  assert.equal(none.status, 401);
  assert.deepEqual(Object.keys(await none.json()), ['type', 'error']);
  const bearer = new Anthropic({ baseURL: gw.baseURL, apiKey: null, authToken: MK, maxRetries: 0 });
  assert.equal((await bearer.messages.create({ model: 'fake', max_tokens: 5, messages: user('via bearer') })).content[0].text, 'via bearer');
  const both = await post('/v1/messages', { model: 'fake', max_tokens: 5, messages: user('x') }, { 'x-api-key': MK, authorization: 'Bearer other' });
  assert.equal(both.status, 400);
  assert.equal((await both.json()).error.type, 'invalid_request_error');
  const same = await post('/v1/messages', { model: 'fake', max_tokens: 5, messages: user('x') }, { 'x-api-key': MK, authorization: `Bearer ${MK}` });
  assert.equal(same.status, 200);
  // The OpenAI surface's refusal keeps its own shape.
  const oa = await fetch(`${gw.baseURL}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer wrong' },
    body: JSON.stringify({ model: 'fake', messages: user('x') }) });
  assert.equal(oa.status, 401);
  const j = await oa.json();
  assert.equal(j.type, undefined);
  assert.equal(typeof j.error.message, 'string');
  assert.equal(j.error.type, 'invalid_request_error');
});

test('unknown model 404 NotFoundError; upstream 429 RateLimitError with Retry-After; 5xx api_error', async () => {
  await rejects(client.messages.create({ model: 'no-such-model', max_tokens: 5, messages: user('x') }), Anthropic.NotFoundError, 404,
    'not_found_error', /no-such-model/);
  await assert.rejects(client.messages.create({ model: 'busy', max_tokens: 5, messages: user('x') }), (e) => {
    assert.ok(e instanceof Anthropic.RateLimitError);
    assert.equal(e.status, 429);
    assert.equal(e.type, 'rate_limit_error');
    assert.equal(e.headers.get('retry-after'), '1');
    return true;
  });
  await assert.rejects(client.messages.create({ model: 'broken', max_tokens: 5, messages: user('x') }), (e) => {
    assert.ok(e instanceof Anthropic.InternalServerError, e.constructor.name);
    assert.ok(e.status >= 500);
    assert.equal(e.type, 'api_error');
    assert.ok(Array.isArray(e.error.error.attempts), 'the attempts made are listed');
    return true;
  });
});

test('a key over its rate limit: 429 rate_limit_error through the shared admission', async () => {
  const r = await fetch(`${gw.baseURL}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' },
    body: JSON.stringify({ rpm: 1 }) });
  assert.equal(r.status, 201);
  const { key } = await r.json();
  const k = new Anthropic({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  await waitFor(async () => (await post('/v1/messages/count_tokens', { model: 'fake', messages: user('x') }, { 'x-api-key': key })).status === 200,
    { timeout: 5000, what: 'the new key' });
  await k.messages.create({ model: 'fake', max_tokens: 5, messages: user('one') });
  await assert.rejects(k.messages.create({ model: 'fake', max_tokens: 5, messages: user('two') }), (e) => {
    assert.ok(e instanceof Anthropic.RateLimitError);
    assert.equal(e.type, 'rate_limit_error');
    assert.ok(Number(e.headers.get('retry-after')) >= 1);
    return true;
  });
});

test('a stream broken after its head ends with event: error in Anthropic shape', async () => {
  const r = await post('/v1/messages', { model: 'cut', max_tokens: 20, stream: true, messages: user('x') });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.match(text, /^event: message_start\n/);
  const tail = text.trim().split('\n\n').pop();
  assert.match(tail, /^event: error\ndata: /);
  const err = JSON.parse(tail.split('\ndata: ')[1]);
  assert.equal(err.type, 'error');
  assert.equal(err.error.type, 'api_error');
  assert.ok(!text.includes('message_stop'));
  await assert.rejects(async () => { for await (const _ of await client.messages.create({ model: 'cut', max_tokens: 20, stream: true, messages: user('x') })); },
    (e) => e instanceof Anthropic.APIError);
});

// ---- the local engine ----------------------------------------------------------------------

test('local engine: a whole answer and its stream agree (greedy), max_tokens ends it', async () => {
  const params = { model: 'tiny', max_tokens: 12, temperature: 0, messages: user('Hello there') };
  const { data, response } = await client.messages.create(params).withResponse();
  assert.equal(response.headers.get('x-stratus-backend'), 'local');
  assert.equal(data.model, 'tiny');
  assert.equal(data.content.length, 1);
  assert.equal(data.content[0].type, 'text');
  assert.ok(data.content[0].text.length > 0);
  assert.equal(data.stop_reason, 'max_tokens');
  assert.equal(data.usage.output_tokens, 12);
  assert.ok(data.usage.input_tokens > 2);
  const { types, final } = await streamed(params);
  assert.equal(types[0], 'message_start');
  assert.deepEqual(types.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(final.content[0].text, data.content[0].text);
  assert.equal(final.stop_reason, 'max_tokens');
  // The same prompt again: the engine's prefix cache serves most of it, which the Messages
  // API reports as cache reads (input_tokens counts only the rest).
  const total = (u) => u.input_tokens + (u.cache_read_input_tokens ?? 0);
  assert.equal(total(final.usage), total(data.usage));
  assert.equal(final.usage.output_tokens, data.usage.output_tokens);
  assert.ok(final.usage.cache_read_input_tokens > 0, 'the repeated prompt was read from the cache');
});

test('local engine: stop_sequences end the text before the stop', async () => {
  const base = { model: 'tiny', max_tokens: 16, temperature: 0, messages: user('Count with me') };
  const full = (await client.messages.create(base)).content[0].text;
  const at = Math.max(1, Math.floor(full.length / 2));
  const stop = full.slice(at, at + 2);
  const cut = await client.messages.create({ ...base, stop_sequences: [stop] });
  const text = cut.content.length ? cut.content[0].text : '';
  assert.equal(text, full.slice(0, full.indexOf(stop)));
  assert.ok(['end_turn', 'stop_sequence'].includes(cut.stop_reason));
});

test('local engine: count_tokens and system blocks', async () => {
  const m = await client.messages.create({ model: 'tiny', max_tokens: 4, temperature: 0,
    system: [{ type: 'text', text: 'You are a poet.' }], messages: user('Write') });
  assert.equal(m.usage.output_tokens, 4);
  const plain = await client.messages.create({ model: 'tiny', max_tokens: 4, temperature: 0, messages: user('Write') });
  assert.ok(m.usage.input_tokens > plain.usage.input_tokens, 'the system text reached the prompt');
  const c = await client.messages.countTokens({ model: 'tiny', messages: user('Write a poem about the sea') });
  assert.equal(c.input_tokens, Math.ceil('Write a poem about the sea'.length / 4));
});

// Last: under the ASan build a leak or memory error anywhere above makes the exit code 66.
test('passthrough: an Anthropic target gets the client\'s own body and its Message comes back as it was', async () => {
  const n = ant.requests.length;
  const params = { model: 'claude', max_tokens: 50, top_k: 5, metadata: { user_id: 'u-1' }, stop_sequences: ['three'],
    system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
    messages: user('one two three four') };
  const r = await client.messages.create(params).withResponse();
  const sent = ant.requests[n];
  // Byte for byte but the model: fields a translation would drop (top_k, cache_control) arrive.
  assert.deepEqual(sent.body, { ...params, model: 'claude-echo' });
  assert.equal(sent.raw, JSON.stringify({ ...params, model: 'claude-echo' }));
  const m = r.data;
  assert.match(m.id, /^msg_\d{4}$/); // the target's own id
  assert.equal(m.model, 'claude-echo');
  assert.equal(m.stop_reason, 'stop_sequence'); // a translation could only say end_turn
  assert.equal(m.stop_sequence, 'three');
  assert.equal(m.content[0].text, 'one two');
  assert.equal(r.response.headers.get('x-stratus-backend'), 'ant');
  // Accounted like any request: the target's usage is in the log line.
  const line = await gw.waitForLog((l) => l.event === 'request' && l.backend === 'ant' && l.status === 200 && !l.stream);
  assert.equal(line.prompt_tokens, m.usage.input_tokens);
  assert.equal(line.completion_tokens, m.usage.output_tokens);
});

test('passthrough streams: the target\'s events as it sent them (ping included), usage accounted', async () => {
  const { types, final } = await streamed({ model: 'claude', max_tokens: 50, stop_sequences: ['c'], messages: user('a b c d') });
  assert.deepEqual(types.filter((t) => t !== 'content_block_delta'),
    ['message_start', 'content_block_start', 'content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(final.stop_reason, 'stop_sequence');
  assert.equal(final.stop_sequence, 'c');
  assert.equal(final.content[0].text, 'a b');
  const raw = await post('/v1/messages', { model: 'claude', max_tokens: 20, stream: true, messages: user('x y') });
  const text = await raw.text();
  assert.match(text, /^event: message_start\n/);
  assert.match(text, /event: ping\n/); // the target's own keep-alive, passed on
  assert.ok(text.trimEnd().endsWith('data: {"type":"message_stop"}'), text.slice(-200));
  const line = await gw.waitForLog((l) => l.event === 'request' && l.backend === 'ant' && l.stream && l.completion_tokens === 2);
  assert.equal(line.status, 200);
});

test('passthrough is per attempt: when the Anthropic target fails over to an OpenAI one, the answer is translated', async () => {
  const m = await client.messages.create({ model: 'claude-or-openai', max_tokens: 20, messages: user('hello there') });
  assert.equal(m.content[0].text, 'hello there');
  assert.equal(m.model, 'claude-or-openai'); // our Message: the group the client asked for
  assert.equal(m.stop_reason, 'end_turn');
  const s = await streamed({ model: 'claude-or-openai', max_tokens: 20, messages: user('streamed words') });
  assert.equal(s.final.model, 'claude-or-openai'); // translated from the OpenAI fake's chunks
  assert.equal(s.final.content[0].text, 'streamed words'.repeat(3)); // the fake streams the echo 3 times
});

test('the gateway shuts down cleanly after all of the above (exit 0, no sanitizer report)', async () => {
  assert.equal(await gw.stop(), 0, gw.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n').slice(0, 4000));
  assert.ok(!/Sanitizer/.test(gw.stderr));
});
