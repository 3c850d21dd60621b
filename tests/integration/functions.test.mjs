// Functions (#11): a JSON input fills a prompt template; classify answers {label, score,
// scores} with real probabilities from the model's log-probabilities; json and text answer
// {output}. Reached through stratus's own door (fetch, like curl), AWS Lambda's Invoke
// (@aws-sdk/client-lambda) and SageMaker runtime's InvokeEndpoint
// (@aws-sdk/client-sagemaker-runtime), with only the endpoint changed. The local engine is
// the real tiny demo model (random weights: the label it prefers is arbitrary, but the
// probabilities must be exactly what its logprobs say); fakes stand in for cloud upstreams.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { LambdaClient, InvokeCommand } from '@aws-sdk/client-lambda';
import { SageMakerRuntimeClient, InvokeEndpointCommand } from '@aws-sdk/client-sagemaker-runtime';
import { startFake } from '../fakes/openai.mjs';
import { startAnthropicFake } from '../fakes/anthropic.mjs';
import { startGateway, waitFor, SCALE } from './lib/gateway.mjs';

const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
const MK = 'sk-master-functions-test-0123456789';
let gw, up, anthropic;

const TEMPLATE = '"From: {{from}}\\nSubject: {{subject}}\\n\\n{{body}}\\n\\nAnswer:"';
function yaml({ auth = false } = {}) {
  return `log: { requests: true }
${auth ? 'auth: { master_key: env:MK, refresh_ms: 200 }' : ''}
backends:
  # prefill_chunk 512: generation takes the prompt in one batch, as the scoring path does, so
  # their logprobs can be compared to 1e-4 (64-token chunks sum in another order: ~4e-4 apart)
  - { name: local, type: local, model_path: "${MODEL}", parallel: 2, threads: 2, ctx_size: 512, prefill_chunk: 512 }
  - { name: up, type: openai, base_url: "${up.url}" }
  - { name: claude, type: anthropic, base_url: "${anthropic.url}", api_key: "env:ANTHROPIC_KEY" }
models:
  - { name: demo, targets: [ { backend: local, model: tiny } ] }
  - { name: cloud-logprobs, targets: [ { backend: up, model: logprobs-phish } ] }
  - { name: cloud-echo, targets: [ { backend: up, model: echo } ] }
  - { name: cloud-json, targets: [ { backend: up, model: json-ok } ] }
  - { name: cloud-json-bad, targets: [ { backend: up, model: json-bad } ] }
  - { name: cloud-broken, targets: [ { backend: up, model: fail-500 } ] }
  - { name: claude, targets: [ { backend: claude, model: echo } ] }
functions:
  - name: phishing-rater
    model: demo
    kind: classify
    labels: [phishing, legitimate]
    system: "You rate emails for phishing."
    template: ${TEMPLATE}
  - { name: rater-cloud, model: cloud-logprobs, kind: classify, labels: [phishing, legitimate], template: "{{body}}" }
  - { name: rater-echo, model: cloud-echo, kind: classify, labels: [phishing, legitimate], template: "{{answer}}" }
  - { name: rater-claude, model: claude, kind: classify, labels: [phishing, legitimate], template: "{{answer}}" }
  - { name: rater-broken, model: cloud-broken, kind: classify, labels: [phishing, legitimate], template: "{{body}}" }
  - name: sender
    model: cloud-json
    kind: json
    schema: { type: object, properties: { sender: { type: string } }, required: [sender], additionalProperties: false }
    template: "Who sent this? {{text}}"
  - name: sender-bad
    model: cloud-json-bad
    kind: json
    schema: { type: object, properties: { sender: { type: string } }, required: [sender] }
    template: "Who sent this? {{text}}"
  - name: local-json
    model: demo
    kind: json
    schema: { type: object, properties: { verdict: { enum: [yes, no] }, urgent: { type: boolean }, tags: { type: array, items: { enum: [a, b] }, maxItems: 3 } }, required: [verdict, urgent, tags] }
    template: "Is this urgent? {{text}}"
    max_tokens: 120
  - { name: echo-text, model: cloud-echo, kind: text, template: "Say: {{text}}" }
  - { name: local-text, model: demo, kind: text, template: "Say: {{text}}", max_tokens: 6 }
`;
}

const EMAIL = { from: 'billing@paypa1.example', subject: 'Your account is locked', body: 'Click here to verify.' };
const invoke = (name, input, headers = {}) => fetch(`${gw.baseURL}/v1/functions/${name}/invoke`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...headers },
  body: typeof input === 'string' ? input : JSON.stringify(input),
});
const aws = { region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } };

function rows(g, sql) {
  const out = execFileSync('sqlite3', ['-json', join(dirname(g.file), 'stratus.db'), sql], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
}

before(async () => {
  assert.ok(existsSync(MODEL), `${MODEL} is missing: run make models`);
  up = await startFake();
  anthropic = await startAnthropicFake();
  gw = await startGateway(yaml(), { env: { ANTHROPIC_KEY: 'test-anthropic-key' } });
  await waitFor(async () => (await fetch(`${gw.baseURL}/ready`)).status === 200,
    { timeout: 30000 * SCALE, what: 'the demo model to load' });
});
after(async () => {
  await up?.close();
  await anthropic?.close();
});


test('classify on the local engine: scores are probabilities that sum to 1, label is the argmax, and it is deterministic', async () => {
  const r = await invoke('phishing-rater', EMAIL);
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal(r.headers.get('x-stratus-backend'), 'local');
  const a = await r.json();
  assert.deepEqual(Object.keys(a.scores), ['phishing', 'legitimate']);
  const sum = a.scores.phishing + a.scores.legitimate;
  assert.ok(Math.abs(sum - 1) < 1e-6, `scores sum to ${sum}`);
  const argmax = a.scores.phishing >= a.scores.legitimate ? 'phishing' : 'legitimate';
  assert.equal(a.label, argmax);
  assert.equal(a.score, a.scores[a.label]);
  assert.equal(a.score_source, 'logprobs');
  assert.equal(a.model, 'tiny');
  assert.equal(a.backend, 'local');
  assert.equal(typeof a.latency_ms, 'number');
  assert.ok(a.usage.prompt_tokens > 0);
  const again = await (await invoke('phishing-rater', EMAIL)).json();
  assert.deepEqual(again.scores, a.scores);
});

test('classify scores equal the probabilities computed directly from the engine logprobs', async () => {
  // The first answer token's distribution, as the engine reports it through chat completions.
  const system = 'You rate emails for phishing.\nAnswer with exactly one of: ';
  const user = `From: ${EMAIL.from}\nSubject: ${EMAIL.subject}\n\n${EMAIL.body}\n\nAnswer:`;
  // Labels that are single tokens of this vocabulary: the engine's own top alternatives.
  const probe = await (await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', temperature: 0, max_tokens: 1, logprobs: true, top_logprobs: 5,
      messages: [{ role: 'system', content: `${system}phishing, legitimate.` }, { role: 'user', content: user }] }),
  })).json();
  const top = probe.choices[0].logprobs.content[0].top_logprobs;
  assert.equal(top.length, 5);
  const labels = top.filter((t) => /^ ?[A-Za-z]+$/.test(t.token)).slice(0, 2);
  if (labels.length < 2) return assert.fail(`need two alphabetic single-token alternatives, got ${JSON.stringify(top)}`);
  // Score the same labels through the engine's scoring path with the same prompt.
  const direct = await (await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', stratus_labels: labels.map((l) => l.token),
      messages: [{ role: 'system', content: `${system}phishing, legitimate.` }, { role: 'user', content: user }] }),
  })).json();
  for (let i = 0; i < 2; i++)
    assert.ok(Math.abs(direct.stratus_label_logprobs[i] - labels[i].logprob) < 1e-4,
      `label ${labels[i].token}: scored ${direct.stratus_label_logprobs[i]}, generation logprob ${labels[i].logprob}`);
  // And the function's probabilities are those logprobs, normalised.
  const a = await (await invoke('phishing-rater', EMAIL)).json();
  const engine = await (await fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', stratus_labels: ['phishing', 'legitimate'],
      messages: [{ role: 'system', content: `${system}phishing, legitimate.` }, { role: 'user', content: user }] }),
  })).json();
  const [lp, ll] = engine.stratus_label_logprobs;
  const p = Math.exp(lp) / (Math.exp(lp) + Math.exp(ll));
  assert.ok(Math.abs(a.scores.phishing - p) < 1e-9, `${a.scores.phishing} vs ${p}`);
});

test('a batch (array input) answers an array in order, identical to single invocations, one ledger row each', async () => {
  const inputs = [EMAIL, { from: 'alice@example.com', subject: 'Lunch?', body: 'Noon at the usual place.' }, EMAIL];
  const before = rows(gw, "SELECT count(*) AS n FROM requests WHERE endpoint = 'functions/invoke'")[0].n;
  const r = await invoke('phishing-rater', inputs);
  assert.equal(r.status, 200);
  const batch = await r.json();
  assert.equal(batch.length, 3);
  for (let i = 0; i < 3; i++) {
    const single = await (await invoke('phishing-rater', inputs[i])).json();
    for (const l of ['phishing', 'legitimate']) assert.ok(Math.abs(batch[i].scores[l] - single.scores[l]) < 1e-9);
    assert.equal(batch[i].label, single.label);
  }
  // The same input twice in one batch: the same probabilities (to float rounding: the
  // engine's matrix products sum in an order that depends on the batch's shape).
  for (const l of ['phishing', 'legitimate']) assert.ok(Math.abs(batch[0].scores[l] - batch[2].scores[l]) < 1e-9);
  await waitFor(() => rows(gw, "SELECT count(*) AS n FROM requests WHERE endpoint = 'functions/invoke'")[0].n >= before + 6,
    { what: 'ledger rows' });
  const last = rows(gw, "SELECT model, backend, status FROM requests WHERE endpoint = 'functions/invoke' ORDER BY id DESC LIMIT 1")[0];
  assert.deepEqual(last, { model: 'demo', backend: 'local', status: 200 });
});

test('classify on an OpenAI-compatible upstream: first-token top_logprobs shared over the labels they begin; no stratus_labels sent', async () => {
  const n = up.requests.length;
  const a = await (await invoke('rater-cloud', { body: 'x' })).json();
  const sent = up.requests[n].body;
  assert.equal(sent.stratus_labels, undefined, 'the engine extension must not reach a cloud upstream');
  assert.equal(sent.logprobs, true);
  assert.equal(sent.top_logprobs, 20);
  // ph 0.6 + Ph 0.05 begin "phishing"; legit 0.3 begins "legitimate"; xyz is no label.
  assert.ok(Math.abs(a.scores.phishing - 0.65 / 0.95) < 1e-9);
  assert.ok(Math.abs(a.scores.legitimate - 0.30 / 0.95) < 1e-9);
  assert.equal(a.label, 'phishing');
  assert.equal(a.score_source, 'logprobs');
});

test('classify without logprobs (an echoing upstream, Anthropic) falls back to one generated label and says so', async () => {
  const a = await (await invoke('rater-echo', { answer: ' Legitimate, I think' })).json();
  assert.equal(a.label, 'legitimate');
  assert.deepEqual(a.scores, { phishing: 0, legitimate: 1 });
  assert.equal(a.score_source, 'generated');
  const c = await invoke('rater-claude', { answer: 'phishing' });
  assert.equal(c.status, 200, await c.clone().text());
  const cj = await c.json();
  assert.equal(cj.label, 'phishing');
  assert.equal(cj.score_source, 'generated');
  assert.equal(cj.backend, 'claude');
  // An answer naming no label is an error with the raw text, never a guess.
  const bad = await invoke('rater-echo', { answer: 'no idea' });
  assert.equal(bad.status, 502);
  const e = (await bad.json()).error;
  assert.equal(e.code, 'invalid_output');
  assert.equal(e.raw, 'no idea');
});

test('json functions return the structured output, and output that breaks the schema is a 502 carrying the raw text', async () => {
  const n = up.requests.length;
  const ok = await (await invoke('sender', { text: 'hello' })).json();
  assert.deepEqual(ok.output, { sender: 'bob' });
  const rf = up.requests[n].body.response_format;
  assert.equal(rf.type, 'json_schema');
  assert.deepEqual(rf.json_schema.schema.required, ['sender']);
  const bad = await invoke('sender-bad', { text: 'hello' });
  assert.equal(bad.status, 502);
  const e = (await bad.json()).error;
  assert.equal(e.code, 'invalid_output');
  assert.match(e.message, /missing required property 'sender'/);
  assert.equal(e.raw, '{"name":1}');
});

test('json functions on the local engine: the schema becomes the grammar, so even a random model answers in it', async () => {
  for (const text of ['The server is down!', 'Lunch at noon', 'Invoice attached']) {
    const r = await invoke('local-json', { text });
    assert.equal(r.status, 200, await r.clone().text());
    const { output, backend } = await r.json();
    assert.equal(backend, 'local');
    assert.deepEqual(Object.keys(output), ['verdict', 'urgent', 'tags']);
    assert.ok(['yes', 'no'].includes(output.verdict));
    assert.equal(typeof output.urgent, 'boolean');
    assert.ok(output.tags.length <= 3 && output.tags.every((t) => t === 'a' || t === 'b'));
  }
});

test('text functions return the completion; template values are inserted as text, never expanded', async () => {
  const a = await (await invoke('echo-text', { text: '{{text}} and {{other}}' })).json();
  assert.equal(a.output, 'Say: {{text}} and {{other}}');
  const n = await (await invoke('echo-text', { text: 42 })).json();
  assert.equal(n.output, 'Say: 42');
  const local = await invoke('local-text', { text: 'hi' });
  assert.equal(local.status, 200);
  const l = await local.json();
  assert.equal(typeof l.output, 'string');
  assert.ok(l.usage.completion_tokens >= 1 && l.usage.completion_tokens <= 6);
});

test('bad input: missing field, not an object, bad JSON, empty batch, unknown function — each a clear error', async () => {
  const missing = await invoke('phishing-rater', { from: 'a', body: 'b' });
  assert.equal(missing.status, 400);
  const m = (await missing.json()).error;
  assert.equal(m.code, 'missing_field');
  assert.equal(m.param, 'subject');
  assert.match(m.message, /missing field 'subject'/);
  const scalar = await invoke('phishing-rater', '"just a string"');
  assert.equal(scalar.status, 400);
  assert.match((await scalar.json()).error.message, /must be a JSON object/);
  const broken = await invoke('phishing-rater', '{"from":');
  assert.equal(broken.status, 400);
  assert.equal((await broken.json()).error.code, 'invalid_json');
  const empty = await invoke('phishing-rater', '[]');
  assert.equal(empty.status, 400);
  const inBatch = await invoke('phishing-rater', [EMAIL, { from: 'x' }]);
  assert.equal(inBatch.status, 400);
  assert.match((await inBatch.json()).error.message, /^input\[1\]: input is missing field 'subject'/);
  const unknown = await invoke('nope', EMAIL);
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.code, 'function_not_found');
  const noInvoke = await fetch(`${gw.baseURL}/v1/functions/phishing-rater`, { method: 'POST', body: '{}' });
  assert.equal(noInvoke.status, 404);
  const get = await fetch(`${gw.baseURL}/v1/functions/phishing-rater/invoke`);
  assert.equal(get.status, 405);
  // An input is a record, not a corpus: past 1 MiB, 413 naming the limit, and the loop stays free.
  const huge = invoke('phishing-rater', JSON.stringify({ from: 'a', subject: 'b', body: 'x'.repeat(2 << 20) }));
  const t0 = Date.now();
  assert.equal((await fetch(`${gw.baseURL}/health`)).status, 200);
  assert.ok(Date.now() - t0 < 2000 * SCALE);
  const big = await huge;
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error.code, 'input_too_large');
  const failing = await invoke('rater-broken', { body: 'x' });
  assert.equal(failing.status, 502);
  assert.equal((await fetch(`${gw.baseURL}/health`)).status, 200);
});

test('AWS Lambda Invoke through @aws-sdk/client-lambda with only the endpoint changed', async () => {
  const lambda = new LambdaClient({ ...aws, endpoint: gw.baseURL, maxAttempts: 1 });
  const out = await lambda.send(new InvokeCommand({ FunctionName: 'phishing-rater', Payload: Buffer.from(JSON.stringify(EMAIL)) }));
  assert.equal(out.StatusCode, 200);
  assert.equal(out.FunctionError, undefined);
  assert.equal(out.ExecutedVersion, '$LATEST');
  const a = JSON.parse(Buffer.from(out.Payload).toString());
  const direct = await (await invoke('phishing-rater', EMAIL)).json();
  assert.deepEqual(a.scores, direct.scores);
  assert.equal(a.label, direct.label);
  // An ARN names the same function.
  const arn = await lambda.send(new InvokeCommand({ FunctionName: 'arn:aws:lambda:us-east-1:123456789012:function:phishing-rater',
    Payload: Buffer.from(JSON.stringify(EMAIL)) }));
  assert.equal(JSON.parse(Buffer.from(arn.Payload).toString()).label, direct.label);
  // A function error is Lambda's: 200 + FunctionError Unhandled + {errorMessage, errorType}.
  const fe = await lambda.send(new InvokeCommand({ FunctionName: 'phishing-rater', Payload: Buffer.from('{"from":"x"}') }));
  assert.equal(fe.StatusCode, 200);
  assert.equal(fe.FunctionError, 'Unhandled');
  const body = JSON.parse(Buffer.from(fe.Payload).toString());
  assert.equal(body.errorType, 'missing_field');
  assert.match(body.errorMessage, /missing field 'subject'/);
  // The service refusing is a typed SDK exception.
  await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'nope', Payload: Buffer.from('{}') })),
    (e) => e.name === 'ResourceNotFoundException' && e.$metadata.httpStatusCode === 404);
  const dry = await lambda.send(new InvokeCommand({ FunctionName: 'phishing-rater', InvocationType: 'DryRun' }));
  assert.equal(dry.StatusCode, 204);
  await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'phishing-rater', InvocationType: 'Event', Payload: Buffer.from('{}') })),
    (e) => e.$metadata.httpStatusCode === 400 && /synchronously/.test(e.message));
});

test('SageMaker runtime InvokeEndpoint through @aws-sdk/client-sagemaker-runtime with only the endpoint changed', async () => {
  const sm = new SageMakerRuntimeClient({ ...aws, endpoint: gw.baseURL, maxAttempts: 1 });
  const out = await sm.send(new InvokeEndpointCommand({ EndpointName: 'phishing-rater', ContentType: 'application/json',
    Body: Buffer.from(JSON.stringify(EMAIL)) }));
  const a = JSON.parse(Buffer.from(out.Body).toString());
  assert.equal(out.ContentType, 'application/json');
  assert.ok(['phishing', 'legitimate'].includes(a.label));
  assert.ok(Math.abs(a.scores.phishing + a.scores.legitimate - 1) < 1e-6);
  await assert.rejects(sm.send(new InvokeEndpointCommand({ EndpointName: 'phishing-rater', ContentType: 'application/json',
    Body: Buffer.from('{"from":"x"}') })), (e) => e.name === 'ModelError' && e.OriginalStatusCode === 400 && /subject/.test(e.OriginalMessage));
  await assert.rejects(sm.send(new InvokeEndpointCommand({ EndpointName: 'nope', ContentType: 'application/json', Body: Buffer.from('{}') })),
    (e) => e.name === 'ValidationError' && e.$metadata.httpStatusCode === 400);
});

test('keys: a key whose models list names the function may call it; others get 403; bad keys 401 in each door\'s shape', async () => {
  const g = await startGateway(yaml({ auth: true }), { env: { MK, ANTHROPIC_KEY: 'test-anthropic-key' } });
  try {
    await waitFor(async () => (await fetch(`${g.baseURL}/ready`)).status === 200, { timeout: 30000 * SCALE, what: 'ready' });
    const mk = (models, more = {}) => fetch(`${g.baseURL}/admin/keys`, { method: 'POST',
      headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' }, body: JSON.stringify({ models, ...more }) }).then((r) => r.json());
    const allowed = await mk(['rater-echo']);
    const other = await mk(['cloud-json']);
    const call = (key, name = 'rater-echo') => fetch(`${g.baseURL}/v1/functions/${name}/invoke`, { method: 'POST',
      headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ answer: 'phishing' }) });
    assert.equal((await call(allowed.key)).status, 200);
    const denied = await call(other.key);
    assert.equal(denied.status, 403);
    assert.match((await denied.json()).error.message, /may not call function 'rater-echo'/);
    assert.equal((await call('sk-wrong')).status, 401);
    const noKey = await fetch(`${g.baseURL}/2015-03-31/functions/rater-echo/invocations`, { method: 'POST', body: '{}' });
    assert.equal(noKey.status, 403); // AWS answers a missing credential with 403
    assert.equal(noKey.headers.get('x-amzn-errortype'), 'UnrecognizedClientException');
    // SigV4 as the AWS SDKs sign: credentials from `keys create --aws` (here the admin API).
    const unknown = new LambdaClient({ ...aws, endpoint: g.baseURL, maxAttempts: 1 });
    await assert.rejects(unknown.send(new InvokeCommand({ FunctionName: 'rater-echo', Payload: Buffer.from('{}') })),
      (e) => e.name === 'UnrecognizedClientException' && e.$metadata.httpStatusCode === 403);
    const awsKey = await mk(['rater-echo'], { aws: true });
    const creds = { accessKeyId: awsKey.aws_access_key_id, secretAccessKey: awsKey.aws_secret_access_key };
    const signed = new LambdaClient({ region: 'us-east-1', credentials: creds, endpoint: g.baseURL, maxAttempts: 1 });
    const ok = await signed.send(new InvokeCommand({ FunctionName: 'rater-echo', Payload: Buffer.from('{"answer":"phishing"}') }));
    assert.equal(JSON.parse(Buffer.from(ok.Payload).toString()).label, 'phishing');
    const wrong = new LambdaClient({ region: 'us-east-1', endpoint: g.baseURL, maxAttempts: 1,
      credentials: { ...creds, secretAccessKey: creds.secretAccessKey.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) } });
    await assert.rejects(wrong.send(new InvokeCommand({ FunctionName: 'rater-echo', Payload: Buffer.from('{}') })),
      (e) => e.name === 'InvalidSignatureException' && e.$metadata.httpStatusCode === 403);
    const sm = new SageMakerRuntimeClient({ region: 'us-east-1', credentials: creds, endpoint: g.baseURL, maxAttempts: 1 });
    const smOut = await sm.send(new InvokeEndpointCommand({ EndpointName: 'rater-echo', ContentType: 'application/json',
      Body: Buffer.from('{"answer":"legitimate"}') }));
    assert.equal(JSON.parse(Buffer.from(smOut.Body).toString()).label, 'legitimate');
    const bearer = await fetch(`${g.baseURL}/2015-03-31/functions/rater-echo/invocations`, { method: 'POST',
      headers: { authorization: `Bearer ${allowed.key}` }, body: JSON.stringify({ answer: 'legitimate' }) });
    assert.equal(bearer.status, 200);
    assert.equal((await bearer.json()).label, 'legitimate');
  } finally {
    assert.equal(await g.stop(), 0);
  }
});

test('config: functions are checked at load with line:col (labels empty or duplicated, bad template, unknown model)', async () => {
  const base = `backends:\n  - { name: up, type: openai, base_url: "http://127.0.0.1:1/v1" }\nmodels:\n  - { name: m, targets: [ { backend: up } ] }\nfunctions:\n`;
  const cases = [
    ['  - { name: f, model: m, kind: classify, labels: [], template: "x" }', /6:\d+: .*labels must be a non-empty list/],
    ['  - { name: f, model: m, kind: classify, labels: [a, A], template: "x" }', /6:\d+: .*label 'A' is listed twice/],
    ['  - { name: f, model: m, kind: classify, labels: [a, " "], template: "x" }', /6:\d+: .*non-blank/],
    ['  - { name: f, model: m, kind: classify, labels: [a], template: "{{x" }', /6:\d+: .*never closed/],
    ['  - { name: f, model: m, kind: classify, labels: [a], template: "{{a b}}" }', /6:\d+: .*must be a field name/],
    ['  - { name: f, model: nope, kind: text, template: "x" }', /6:\d+: .*model 'nope' is not a model group/],
    ['  - { name: f, model: m, kind: json, template: "x" }', /6:\d+: .*needs 'schema'/],
    ['  - { name: "f/g", model: m, kind: text, template: "x" }', /6:\d+: .*must be 1-64 letters/],
    ['  - { name: f, model: m, kind: guess, template: "x" }', /6:\d+: .*kind must be classify, json or text/],
  ];
  for (const [fn, want] of cases) {
    const file = join(dirname(gw.file), `bad-${cases.indexOf(cases.find((c) => c[0] === fn))}.yaml`);
    execFileSync('sh', ['-c', `cat > ${file}`], { input: base + fn + '\n' });
    let err = '';
    try { execFileSync(process.env.STRATUS_BIN || 'build/stratus', ['check', '--config', file], { stdio: 'pipe' }); } catch (e) { err = String(e.stderr); }
    assert.match(err, want, fn);
  }
});

test('the example clients work as documented (examples/phishing-rater: client.mjs through Lambda, rate.sh with curl)', async () => {
  const env = { ...process.env, STRATUS_URL: gw.baseURL };
  const out = execFileSync('node', ['examples/phishing-rater/client.mjs'], { env, encoding: 'utf8' });
  assert.match(out, /^(phishing|legitimate) \(p=[01]\.\d{3}, logprobs, local, [\d.]+ ms\)\n$/);
  const curl = JSON.parse(execFileSync('examples/phishing-rater/rate.sh', [gw.baseURL], { encoding: 'utf8' }));
  assert.ok(['phishing', 'legitimate'].includes(curl.label));
  assert.equal(curl.score_source, 'logprobs');
  execFileSync(process.env.STRATUS_BIN || 'build/stratus', ['check', '--config', 'examples/phishing-rater/stratus.yaml']);
  assert.match(execFileSync(process.env.STRATUS_BIN || 'build/stratus', ['check', '--config', 'config/stratus.yaml'], { encoding: 'utf8' }),
    /1 function\)/);
});

// Last: a clean exit (under ASan, a leak or error makes it non-zero).
test('the gateway shuts down cleanly after all of the above', async () => {
  assert.equal(await gw.stop(), 0, gw.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n').slice(0, 2000));
});
