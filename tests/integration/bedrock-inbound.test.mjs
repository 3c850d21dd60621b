// The AWS Bedrock runtime surface (issue #11): the official @aws-sdk/client-bedrock-runtime
// talks to the real gateway with only `endpoint` changed — Converse, ConverseStream,
// InvokeModel and InvokeModelWithResponseStream, tool use, AWS-shaped errors (x-amzn-ErrorType
// and {"message"}) and both ways AWS clients authenticate: a Bedrock API key (bearer token)
// and SigV4 with credentials from `stratus keys create --aws`. Upstreams: the fake OpenAI
// server, the fake Bedrock runtime (tool use and images through the bedrock provider) and
// the real local engine on the tiny demo model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { SignatureV4 } from '@smithy/signature-v4';
import { HttpRequest } from '@smithy/protocol-http';
import { Sha256 } from '@aws-crypto/sha256-js';
import { toUtf8, fromUtf8 } from '@smithy/util-utf8';
import { startFake } from '../fakes/openai.mjs';
import { startBedrockFake } from '../fakes/bedrock.mjs';
import { startGateway, config, waitFor, SCALE, BIN } from './lib/gateway.mjs';

const MK = 'test-master-key-bedrock-0123456789';
const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
const AWS_UP = { accessKeyId: 'AKIDUPSTREAM', secretAccessKey: 'upstream/secret', sessionToken: 'tok' };
let gw, oa, bed;

// The SDK as it ships: its default handler is NodeHttp2Handler (h2c with prior knowledge on
// an http:// endpoint, which the listener speaks, #15). HTTP1=1 runs the suite over HTTP/1.1
// instead; one test below always does.
function requestHandler() {
  return process.env.HTTP1 === '1' ? new NodeHttpHandler() : undefined;
}

// A client as an application would make one: only `endpoint` (and the auth) is ours.
function bearerClient(token = MK) {
  return new BedrockRuntimeClient({
    endpoint: gw.baseURL, region: 'us-east-1', maxAttempts: 1, requestHandler: requestHandler(),
    token: { token }, authSchemePreference: ['httpBearerAuth'],
  });
}

const user = (text) => ({ role: 'user', content: [{ text }] });
const utf8 = new TextDecoder();

before(async () => {
  oa = await startFake();
  bed = await startBedrockFake({ region: 'us-east-1', ...AWS_UP });
  let yaml = config({
    extra: 'auth: { master_key: env:MK, refresh_ms: 200 }',
    backends: [
      { name: 'oa', url: oa.url },
      { name: 'aws', type: 'bedrock', url: bed.url, fields: { region: 'us-east-1' } },
    ],
    models: [
      { name: 'chat', targets: [{ backend: 'oa', model: 'echo' }] },
      { name: 'streamy', targets: [{ backend: 'oa', model: 'stream-4' }] },
      { name: 'limited', targets: [{ backend: 'oa', model: 'fail-429' }] },
      { name: 'broken', targets: [{ backend: 'oa', model: 'reset-mid-stream' }] },
      { name: 'tools', targets: [{ backend: 'aws', model: 'tool-call' }] },
      { name: 'describe', targets: [{ backend: 'aws', model: 'describe' }] },
      { name: 'my group/v1', targets: [{ backend: 'oa', model: 'ok' }] },
    ],
  });
  if (existsSync(MODEL)) {
    yaml = yaml.replace('backends:\n', `backends:\n  - { name: local, type: local, model_path: "${MODEL}", parallel: 2, threads: 2, ctx_size: 512 }\n`);
    yaml += '  - { name: tiny, targets: [ { backend: local, model: tiny } ] }\n';
  }
  gw = await startGateway(yaml, { env: {
    MK, AWS_ACCESS_KEY_ID: AWS_UP.accessKeyId, AWS_SECRET_ACCESS_KEY: AWS_UP.secretAccessKey,
    AWS_SESSION_TOKEN: AWS_UP.sessionToken,
  } });
});

after(async () => {
  await gw?.stop();
  await oa?.close();
  await bed?.close();
});

test('Converse: text answer, stop reason, usage, metrics, stratus headers; the upstream got an OpenAI chat body', async () => {
  const r = await bearerClient().send(new ConverseCommand({
    modelId: 'chat',
    system: [{ text: 'Be brief.' }],
    messages: [user('Hello Bedrock')],
    inferenceConfig: { maxTokens: 50, temperature: 0.2, topP: 0.9, stopSequences: ['END'] },
  }));
  assert.deepEqual(r.output.message, { role: 'assistant', content: [{ text: 'Hello Bedrock' }] });
  assert.equal(r.stopReason, 'end_turn');
  assert.deepEqual(r.usage, { inputTokens: 11, outputTokens: 5, totalTokens: 16 });
  assert.equal(typeof r.metrics.latencyMs, 'number');
  assert.equal(r.$metadata.httpStatusCode, 200);
  assert.ok(r.$metadata.requestId, 'x-amzn-RequestId reaches the SDK');
  const sent = oa.requests.at(-1).body;
  assert.deepEqual(sent.messages, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello Bedrock' }]);
  assert.equal(sent.max_tokens, 50);
  assert.equal(sent.temperature, 0.2);
  assert.equal(sent.top_p, 0.9);
  assert.deepEqual(sent.stop, ['END']);
});

test('Converse and ConverseStream over HTTP/1.1 too (a client that configures NodeHttpHandler)', async () => {
  const c = new BedrockRuntimeClient({ endpoint: gw.baseURL, region: 'us-east-1', maxAttempts: 1,
    requestHandler: new NodeHttpHandler(), token: { token: MK }, authSchemePreference: ['httpBearerAuth'] });
  const out = await c.send(new ConverseCommand({ modelId: 'chat', messages: [user('hello over 1.1')] }));
  assert.equal(out.output.message.role, 'assistant');
  assert.ok(out.output.message.content[0].text.length > 0);
  const s = await c.send(new ConverseStreamCommand({ modelId: 'chat', messages: [user('stream over 1.1')] }));
  const kinds = [];
  for await (const ev of s.stream) kinds.push(Object.keys(ev)[0]);
  assert.equal(kinds[0], 'messageStart');
  assert.equal(kinds.at(-1), 'metadata');
});

test('Converse: a model group name with a space and a slash arrives percent-decoded', async () => {
  const r = await bearerClient().send(new ConverseCommand({ modelId: 'my group/v1', messages: [user('hi')] }));
  assert.equal(r.output.message.content[0].text, 'Hello from the fake');
  assert.equal(oa.requests.at(-1).body.model, 'ok');
});

test('ConverseStream: messageStart, text deltas, contentBlockStop, messageStop, metadata with usage', async () => {
  const r = await bearerClient().send(new ConverseStreamCommand({ modelId: 'streamy', messages: [user('go')] }));
  const events = [];
  for await (const ev of r.stream) events.push(ev);
  const kinds = events.map((e) => Object.keys(e)[0]);
  assert.deepEqual(kinds, ['messageStart', 'contentBlockDelta', 'contentBlockDelta', 'contentBlockDelta',
    'contentBlockDelta', 'contentBlockStop', 'messageStop', 'metadata']);
  assert.equal(events[0].messageStart.role, 'assistant');
  const text = events.filter((e) => e.contentBlockDelta).map((e) => e.contentBlockDelta.delta.text).join('');
  assert.equal(text, 'tok0 tok1 tok2 tok3 ');
  assert.ok(events.filter((e) => e.contentBlockDelta).every((e) => e.contentBlockDelta.contentBlockIndex === 0));
  assert.equal(events[6].messageStop.stopReason, 'end_turn');
  assert.deepEqual(events[7].metadata.usage, { inputTokens: 11, outputTokens: 4, totalTokens: 15 });
  assert.equal(typeof events[7].metadata.metrics.latencyMs, 'number');
});

test('the event stream is byte-valid for @smithy/eventstream-codec: headers and both CRCs', async () => {
  const res = await fetch(`${gw.baseURL}/model/streamy/converse-stream`, {
    method: 'POST', headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [user('go')] }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/vnd.amazon.eventstream');
  const bytes = new Uint8Array(await res.arrayBuffer());
  const codec = new EventStreamCodec(toUtf8, fromUtf8);
  const messages = [];
  for (let off = 0; off < bytes.length;) {
    const len = new DataView(bytes.buffer, off, 4).getUint32(0);
    messages.push(codec.decode(bytes.subarray(off, off + len))); // throws on a CRC mismatch
    off += len;
  }
  assert.equal(messages.length, 8);
  for (const m of messages) {
    assert.equal(m.headers[':message-type'].value, 'event');
    assert.equal(m.headers[':content-type'].value, 'application/json');
  }
  assert.equal(messages[0].headers[':event-type'].value, 'messageStart');
  assert.deepEqual(JSON.parse(utf8.decode(messages[1].body)), { contentBlockIndex: 0, delta: { text: 'tok0 ' } });
});

test('InvokeModel: an Anthropic Messages body in, an Anthropic Messages answer out', async () => {
  const r = await bearerClient().send(new InvokeModelCommand({
    modelId: 'chat', contentType: 'application/json', accept: 'application/json',
    body: JSON.stringify({
      anthropic_version: 'bedrock-2023-05-31', max_tokens: 40, system: 'Terse.',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Invoke me' }] }],
    }),
  }));
  const body = JSON.parse(utf8.decode(r.body));
  assert.equal(r.contentType, 'application/json');
  assert.equal(body.type, 'message');
  assert.equal(body.role, 'assistant');
  assert.equal(body.model, 'chat');
  assert.deepEqual(body.content, [{ type: 'text', text: 'Invoke me' }]);
  assert.equal(body.stop_reason, 'end_turn');
  assert.deepEqual(body.usage, { input_tokens: 11, output_tokens: 5 });
  const sent = oa.requests.at(-1).body;
  assert.deepEqual(sent.messages, [{ role: 'system', content: 'Terse.' }, { role: 'user', content: 'Invoke me' }]);
  assert.equal(sent.max_tokens, 40);
});

test('InvokeModelWithResponseStream: chunk events carrying Anthropic stream events', async () => {
  const r = await bearerClient().send(new InvokeModelWithResponseStreamCommand({
    modelId: 'streamy', contentType: 'application/json',
    body: JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 20, messages: [{ role: 'user', content: 'go' }] }),
  }));
  const events = [];
  for await (const ev of r.body) events.push(JSON.parse(utf8.decode(ev.chunk.bytes)));
  assert.deepEqual(events.map((e) => e.type), ['message_start', 'content_block_start', 'content_block_delta',
    'content_block_delta', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join(''), 'tok0 tok1 tok2 tok3 ');
  assert.equal(events[7].delta.stop_reason, 'end_turn');
  assert.equal(events[7].usage.output_tokens, 4);
  assert.equal(events[8]['amazon-bedrock-invocationMetrics'].outputTokenCount, 4);
});

const weatherTool = {
  toolSpec: {
    name: 'get_weather', description: 'Weather for a city',
    inputSchema: { json: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } },
  },
};

test('tool use: toolConfig out, toolUse back (whole and streamed), toolResult on the next turn', async () => {
  const client = bearerClient();
  const r = await client.send(new ConverseCommand({
    modelId: 'tools', messages: [user('Weather in Paris?')],
    toolConfig: { tools: [weatherTool], toolChoice: { auto: {} } },
  }));
  assert.equal(r.stopReason, 'tool_use');
  const use = r.output.message.content.find((b) => b.toolUse).toolUse;
  assert.deepEqual(use, { toolUseId: 'tooluse_01', name: 'get_weather', input: { location: 'Paris', unit: 'celsius' } });
  // Upstream (Bedrock provider) saw the tool as a toolSpec again: the round trip is lossless.
  assert.equal(bed.requests.at(-1).body.toolConfig.tools[0].toolSpec.name, 'get_weather');

  const s = await client.send(new ConverseStreamCommand({
    modelId: 'tools', messages: [user('Weather in Paris?')], toolConfig: { tools: [weatherTool] },
  }));
  const events = [];
  for await (const ev of s.stream) events.push(ev);
  const start = events.find((e) => e.contentBlockStart);
  assert.deepEqual(start.contentBlockStart.start.toolUse, { toolUseId: 'tooluse_01', name: 'get_weather' });
  const idx = start.contentBlockStart.contentBlockIndex;
  const input = events.filter((e) => e.contentBlockDelta?.contentBlockIndex === idx)
    .map((e) => e.contentBlockDelta.delta.toolUse.input).join('');
  assert.deepEqual(JSON.parse(input), { location: 'Paris', unit: 'celsius' });
  assert.equal(events.find((e) => e.messageStop).messageStop.stopReason, 'tool_use');

  // The next turn: the assistant's toolUse and the user's toolResult become OpenAI tool messages.
  await client.send(new ConverseCommand({
    modelId: 'chat', toolConfig: { tools: [weatherTool] },
    messages: [user('Weather in Paris?'),
      { role: 'assistant', content: [{ toolUse: use }] },
      { role: 'user', content: [{ toolResult: { toolUseId: 'tooluse_01', content: [{ json: { temp: 21 } }] } }, { text: 'Thanks' }] }],
  }));
  const sent = oa.requests.at(-1).body;
  assert.deepEqual(sent.messages[1].tool_calls, [{ id: 'tooluse_01', type: 'function',
    function: { name: 'get_weather', arguments: '{"location":"Paris","unit":"celsius"}' } }]);
  assert.deepEqual(sent.messages[2], { role: 'tool', tool_call_id: 'tooluse_01', content: '{"temp":21}' });
  assert.deepEqual(sent.messages[3], { role: 'user', content: 'Thanks' });
  assert.equal(sent.tools[0].function.name, 'get_weather');
  assert.deepEqual(sent.tools[0].function.parameters.required, ['location']);
});

test('images: Converse image bytes reach the upstream as an image', async () => {
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
  const r = await bearerClient().send(new ConverseCommand({
    modelId: 'describe',
    messages: [{ role: 'user', content: [{ text: 'What is this?' }, { image: { format: 'png', source: { bytes: png } } }] }],
  }));
  assert.match(r.output.message.content[0].text, /image/);
  assert.match(r.output.message.content[0].text, /png/);
});

// ---- errors in AWS's shape ---------------------------------------------------------------

async function rejects(promise, name, status) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.name, name, `${e.name}: ${e.message}`);
    assert.equal(e.$metadata.httpStatusCode, status);
    assert.ok(e.message.length > 0);
    return e;
  }
  throw new Error(`expected ${name}`);
}

test('an unknown model group is ResourceNotFoundException (404)', async () => {
  const e = await rejects(bearerClient().send(new ConverseCommand({ modelId: 'nope', messages: [user('x')] })),
    'ResourceNotFoundException', 404);
  assert.match(e.message, /nope/);
});

test('a model ARN is a ValidationException saying to use the model group name', async () => {
  const e = await rejects(bearerClient().send(new ConverseCommand({
    modelId: 'arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0', messages: [user('x')],
  })), 'ValidationException', 400);
  assert.match(e.message, /ARNs are not supported.*model group name/);
});

test('malformed bodies are ValidationException naming the field', async () => {
  const post = (path, body) => fetch(`${gw.baseURL}/model/chat/${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' }, body,
  });
  const cases = [
    ['converse', '{"messages": [', /not valid JSON/],
    ['converse', '{"messages": "hi"}', /messages must be a list/],
    ['converse', '{"messages": [{"role": "user", "content": [{"text": 5}]}]}', /messages\[0\]\.content\[0\]\.text must be a string/],
    ['converse', '{"messages": [{"role": "user", "content": [{"text": "a"}]}], "inferenceConfig": {"maxTokens": "9"}}', /inferenceConfig\.maxTokens must be an integer/],
    ['converse', '{"messages": [{"role": "robot", "content": []}]}', /messages\[0\]\.role/],
    ['invoke', '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}', /anthropic_version is required/],
    ['invoke', '{"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "x"}]}', /max_tokens is required/],
  ];
  for (const [path, body, re] of cases) {
    const res = await post(path, body);
    assert.equal(res.status, 400, body);
    assert.equal(res.headers.get('x-amzn-errortype'), 'ValidationException');
    const j = await res.json();
    assert.deepEqual(Object.keys(j), ['message']);
    assert.match(j.message, re);
  }
  await rejects(bearerClient().send(new ConverseCommand({ modelId: 'chat', messages: [] })), 'ValidationException', 400);
});

test('an upstream 429 is ThrottlingException with Retry-After kept', async () => {
  const e = await rejects(bearerClient().send(new ConverseCommand({ modelId: 'limited', messages: [user('x')] })),
    'ThrottlingException', 429);
  assert.equal(e.$response.headers['retry-after'], '1');
});

test('a stream broken after its head ends with a modelStreamErrorException frame', async () => {
  const r = await bearerClient().send(new ConverseStreamCommand({ modelId: 'broken', messages: [user('go')] }));
  const seen = [];
  await assert.rejects(async () => { for await (const ev of r.stream) seen.push(Object.keys(ev)[0]); },
    (e) => e.name === 'ModelStreamErrorException' && e.message.length > 0);
  assert.ok(seen.includes('contentBlockDelta'), 'text came before the break');
});

test('auth: no token, a wrong token → 403 UnrecognizedClientException; OpenAI routes keep their shape', async () => {
  await rejects(bearerClient('sk-stratus-wrong').send(new ConverseCommand({ modelId: 'chat', messages: [user('x')] })),
    'UnrecognizedClientException', 403);
  const res = await fetch(`${gw.baseURL}/model/chat/converse`, { method: 'POST', body: '{}' });
  assert.equal(res.status, 403);
  assert.equal(res.headers.get('x-amzn-errortype'), 'UnrecognizedClientException');
  assert.ok((await res.json()).message);
  const oaRes = await fetch(`${gw.baseURL}/v1/chat/completions`, { method: 'POST', body: '{}' });
  assert.equal(oaRes.status, 401);
  assert.equal((await oaRes.json()).error.code, 'missing_api_key');
});

test('auth: a virtual key as a Bedrock API key; its model list gives AccessDeniedException', async () => {
  const made = await (await fetch(`${gw.baseURL}/admin/keys`, {
    method: 'POST', headers: { authorization: `Bearer ${MK}` }, body: JSON.stringify({ models: ['chat'] }),
  })).json();
  const client = bearerClient(made.key);
  const r = await client.send(new ConverseCommand({ modelId: 'chat', messages: [user('key works')] }));
  assert.equal(r.output.message.content[0].text, 'key works');
  await rejects(client.send(new ConverseCommand({ modelId: 'streamy', messages: [user('x')] })), 'AccessDeniedException', 403);
});

test('the local engine answers Converse and ConverseStream with the same greedy text', { timeout: 60000 * SCALE }, async () => {
  assert.ok(existsSync(MODEL), `${MODEL} is missing: run make models`);
  await waitFor(async () => (await (await fetch(`${gw.baseURL}/ready`)).json()).backends.every((b) => b.ready),
    { timeout: 30000, what: 'the model to load' });
  const client = bearerClient();
  const ask = { modelId: 'tiny', messages: [user('Hello local')], inferenceConfig: { maxTokens: 12, temperature: 0 } };
  const whole = await client.send(new ConverseCommand(ask));
  assert.equal(whole.stopReason, 'max_tokens');
  assert.equal(whole.usage.outputTokens, 12);
  const text = whole.output.message.content[0].text;
  assert.ok(text.length > 0);
  const s = await client.send(new ConverseStreamCommand(ask));
  let streamed = '';
  let meta;
  for await (const ev of s.stream) {
    if (ev.contentBlockDelta) streamed += ev.contentBlockDelta.delta.text;
    if (ev.metadata) meta = ev.metadata;
  }
  assert.equal(streamed, text);
  assert.equal(meta.usage.outputTokens, 12);
});

// ---- SigV4 with `stratus keys create --aws` credentials -----------------------------------

function sigv4Client(credentials, extra = {}) {
  return new BedrockRuntimeClient({
    endpoint: gw.baseURL, region: 'us-east-1', maxAttempts: 1, requestHandler: requestHandler(), credentials, ...extra,
  });
}

async function awsKey() {
  const out = execFileSync(BIN, ['keys', 'create', '--config', gw.file, '--aws', '--json', '--name', 'sdk'],
    { env: { ...process.env, MK, AWS_ACCESS_KEY_ID: AWS_UP.accessKeyId, AWS_SECRET_ACCESS_KEY: AWS_UP.secretAccessKey }, encoding: 'utf8' });
  const made = JSON.parse(out);
  assert.match(made.aws_access_key_id, /^ASTR[A-Z2-7]{16}$/);
  assert.equal(made.aws_secret_access_key.length, 40);
  // The running gateway picks the CLI's key up within refresh_ms.
  const creds = { accessKeyId: made.aws_access_key_id, secretAccessKey: made.aws_secret_access_key };
  await waitFor(async () => {
    try { await sigv4Client(creds).send(new ConverseCommand({ modelId: 'chat', messages: [user('ping')] })); return true; } catch { return false; }
  }, { timeout: 5000, what: 'the new key' });
  return creds;
}

test('admin API: "aws": true returns SigV4 credentials that sign InvokeModel', async () => {
  const made = await (await fetch(`${gw.baseURL}/admin/keys`, {
    method: 'POST', headers: { authorization: `Bearer ${MK}` }, body: JSON.stringify({ aws: true, name: 'api' }),
  })).json();
  assert.match(made.aws_access_key_id, /^ASTR/);
  const r = await sigv4Client({ accessKeyId: made.aws_access_key_id, secretAccessKey: made.aws_secret_access_key })
    .send(new InvokeModelCommand({ modelId: 'chat', body: JSON.stringify({
      anthropic_version: 'bedrock-2023-05-31', max_tokens: 5, messages: [{ role: 'user', content: 'via admin' }] }) }));
  assert.equal(JSON.parse(utf8.decode(r.body)).content[0].text, 'via admin');
  const bad = await fetch(`${gw.baseURL}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${MK}` }, body: '{"aws": 1}' });
  assert.equal(bad.status, 400);
});

test('SigV4: keys create --aws credentials sign Converse and ConverseStream; the key is the principal', async () => {
  const creds = await awsKey();
  const client = sigv4Client(creds);
  const r = await client.send(new ConverseCommand({ modelId: 'my group/v1', messages: [user('signed')] }));
  assert.equal(r.output.message.content[0].text, 'Hello from the fake');
  const s = await client.send(new ConverseStreamCommand({ modelId: 'streamy', messages: [user('go')] }));
  let text = '';
  for await (const ev of s.stream) text += ev.contentBlockDelta?.delta?.text ?? '';
  assert.equal(text, 'tok0 tok1 tok2 tok3 ');
  // The list shows the access key id, never the secret.
  const list = await (await fetch(`${gw.baseURL}/admin/keys`, { headers: { authorization: `Bearer ${MK}` } })).json();
  const listed = list.data.find((k) => k.aws_access_key_id === creds.accessKeyId);
  assert.ok(listed);
  assert.ok(!JSON.stringify(list).includes(creds.secretAccessKey));
  // The signature stands for that virtual key: revoking it refuses the next signed request.
  await fetch(`${gw.baseURL}/admin/keys/${listed.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${MK}` } });
  const e = await rejects(client.send(new ConverseCommand({ modelId: 'chat', messages: [user('x')] })), 'UnrecognizedClientException', 403);
  assert.match(e.message, /revoked/);
});

test('SigV4 refusals: wrong secret, expired date, unknown key id, tampered header or body', async () => {
  const creds = await awsKey();
  const ask = new ConverseCommand({ modelId: 'chat', messages: [user('x')] });
  let e = await rejects(sigv4Client({ ...creds, secretAccessKey: 'Z'.repeat(40) }).send(ask),
    'InvalidSignatureException', 403);
  assert.match(e.message, /signature we calculated does not match/);
  e = await rejects(sigv4Client(creds, { systemClockOffset: -10 * 60 * 1000 }).send(ask), 'InvalidSignatureException', 403);
  assert.match(e.message, /Signature expired: \d{8}T\d{6}Z is now earlier than/);
  e = await rejects(sigv4Client({ accessKeyId: 'ASTRAAAAAAAAAAAAAAAA', secretAccessKey: creds.secretAccessKey }).send(ask),
    'UnrecognizedClientException', 403);

  // A request signed by the SDK's signer, then changed in transit.
  const signer = new SignatureV4({ credentials: creds, region: 'us-east-1', service: 'bedrock', sha256: Sha256 });
  const body = JSON.stringify({ messages: [user('signed body')] });
  const signed = await signer.sign(new HttpRequest({
    method: 'POST', protocol: 'http:', hostname: '127.0.0.1', port: gw.port, path: '/model/chat/converse',
    headers: { host: gw.address, 'content-type': 'application/json', 'x-custom': 'one' }, body,
  }));
  const send = (headers, b = body) => fetch(`${gw.baseURL}/model/chat/converse`, { method: 'POST', headers, body: b });
  const ok = await send(signed.headers);
  assert.equal(ok.status, 200, await ok.clone().text());
  for (const [headers, b] of [[{ ...signed.headers, 'x-custom': 'two' }, body], [signed.headers, body.replace('signed', 'forged')]]) {
    const res = await send(headers, b);
    assert.equal(res.status, 403);
    assert.equal(res.headers.get('x-amzn-errortype'), 'InvalidSignatureException');
    assert.match((await res.json()).message, /does not match/);
  }
});

// Last: under the ASan build a leak or memory error anywhere above makes the exit code 66.
test('the gateway shuts down cleanly after all of the above (exit 0, no sanitizer report)', async () => {
  assert.equal(await gw.stop(), 0, gw.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n').slice(0, 4000));
  assert.ok(!/Sanitizer/.test(gw.stderr));
});
