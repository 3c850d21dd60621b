// Hostile request bodies and headers (issue #9): bodies built to cost the event loop
// (many values, many keys, deep nesting), numbers past int64 and out of their documented
// ranges, NUL and invalid UTF-8 in strings, bytes that must not break a log line or an
// error body, and ambiguous Authorization headers. Each must get a prompt 4xx naming the
// field or limit, while the gateway keeps serving everyone else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';
import OpenAI from 'openai';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, waitFor, writeConfig, BIN, SCALE } from './lib/gateway.mjs';

const MK = 'test-master-key-0123456789';
const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
const INT64_MAX = '9223372036854775807';
let gw, up;
const stderrBytes = []; // raw: the helper's text view would hide invalid UTF-8 behind U+FFFD

before(async () => {
  assert.ok(existsSync(MODEL), `${MODEL} is missing: run make models`);
  up = await startFake();
  const yaml = config({
    extra: 'auth: { master_key: env:MK, refresh_ms: 200 }',
    backends: [
      { name: 'up', url: up.url },
      { name: 'local', type: 'local', fields: { model_path: `"${MODEL}"`, parallel: 2, threads: 2, ctx_size: 512 } },
      // A short context: "until the context is full" ends within a few dozen tokens.
      { name: 'short', type: 'local', fields: { model_path: `"${MODEL}"`, parallel: 1, threads: 1, ctx_size: 64 } },
    ],
    models: [
      { name: 'chat', targets: [{ backend: 'up', model: 'ok', price: { input: 1, output: 1 } }] },
      { name: 'tiny', targets: [{ backend: 'local', model: 'tiny' }] },
      { name: 'tiny-short', targets: [{ backend: 'short', model: 'tiny' }] },
    ],
  });
  gw = await startGateway(yaml, { env: { MK } });
  gw.child.stderr.on('data', (d) => stderrBytes.push(d));
  await waitFor(async () => (await fetch(`${gw.baseURL}/ready`)).status === 200, { timeout: 30000, what: 'the model to load' });
});

after(async () => {
  // A clean exit: under ASan (exitcode=66) a leak or an error anywhere above fails here.
  const code = await gw?.stop();
  await up?.close();
  assert.equal(code, 0, gw?.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n'));
});

// POSTs raw bytes (a string or a Buffer) to a /v1 endpoint; returns status, parsed error
// and the raw body, which must always be valid UTF-8 JSON.
async function post(body, { key = MK, path = '/v1/chat/completions' } = {}) {
  const r = await fetch(`${gw.baseURL}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body,
  });
  const bytes = new Uint8Array(await r.arrayBuffer());
  const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); // throws on invalid UTF-8
  return { status: r.status, headers: r.headers, text, json: JSON.parse(text) };
}

const messages = (n) => Array.from({ length: n }, () => '{"role":"user","content":"hi"}').join(',');

async function createKey(settings) {
  const r = await fetch(`${gw.baseURL}/admin/keys`, {
    method: 'POST', headers: { authorization: `Bearer ${MK}`, 'content-type': 'application/json' }, body: JSON.stringify(settings),
  });
  assert.equal(r.status, 201, await r.clone().text());
  return r.json();
}

// One request as raw HTTP/1.1 text, for what fetch will not send (two headers of one name).
function raw(head) {
  return new Promise((resolveRaw, reject) => {
    const s = net.connect(gw.port, '127.0.0.1');
    const chunks = [];
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('end', () => {
      const all = Buffer.concat(chunks);
      const sep = all.indexOf('\r\n\r\n');
      const status = Number(all.subarray(0, sep).toString('latin1').split(' ')[1]);
      const text = new TextDecoder('utf-8', { fatal: true }).decode(all.subarray(sep + 4));
      resolveRaw({ status, json: JSON.parse(text) });
    });
    s.write(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from('\r\n')]));
  });
}

// A large body and a /health sent while it is parsed: both answered within `bound` ms.
async function promptlyWithHealth(body, bound) {
  const t0 = Date.now();
  const big = post(body);
  const health = (async () => {
    await new Promise((r) => setTimeout(r, 20)); // the body is on its way
    const h0 = Date.now();
    const r = await fetch(`${gw.baseURL}/health`);
    return { status: r.status, ms: Date.now() - h0 };
  })();
  const [res, h] = await Promise.all([big, health]);
  const ms = Date.now() - t0;
  assert.ok(ms < bound, `the big body took ${ms} ms`);
  assert.equal(h.status, 200);
  assert.ok(h.ms < bound, `/health waited ${h.ms} ms behind the big body`);
  return res;
}

test('100,000 small messages: parsed in linear time, /health answers meanwhile', async () => {
  const body = `{"model":"nope","messages":[${messages(100000)}]}`;
  assert.ok(body.length > 3_000_000);
  const r = await promptlyWithHealth(body, 3000 * SCALE);
  assert.equal(r.status, 404);
  assert.equal(r.json.error.code, 'model_not_found');
  // One more than the limit: a 400 that names it.
  const over = await post(`{"model":"chat","messages":[${messages(100001)}]}`);
  assert.equal(over.status, 400);
  assert.equal(over.json.error.code, 'array_above_max_length');
  assert.equal(over.json.error.param, 'messages');
  assert.match(over.json.error.message, /at most 100000/);
});

test('300,000 keys in one object: refused promptly naming the limit; a late duplicate is found', async () => {
  const keys = (n) => Array.from({ length: n }, (_, i) => `"k${i}":0`).join(',');
  const r = await promptlyWithHealth(`{"model":"nope","messages":[{"role":"user"}],"o":{${keys(300000)}}}`, 3000 * SCALE);
  assert.equal(r.status, 400);
  assert.equal(r.json.error.code, 'json_too_large');
  assert.match(r.json.error.message, /"o" has 300000 keys; an object may have at most 65536/);
  // Just under the limit: parsed (404: no such model), and a duplicate at the end is found.
  const under = await promptlyWithHealth(`{"model":"nope","messages":[{"role":"user"}],${keys(65000)}}`, 3000 * SCALE);
  assert.equal(under.status, 404);
  const dup = await post(`{"model":"chat","messages":[{"role":"user"}],${keys(65000)},"k64999":1}`);
  assert.equal(dup.status, 400);
  assert.match(dup.json.error.message, /key "k64999" more than once/);
  // The same key spelled with an escape is the same key to every JSON reader upstream.
  const escaped = await post('{"model":"chat","messages":[{"role":"user"}],"mod\\u0065l":"other"}');
  assert.equal(escaped.status, 400);
  assert.match(escaped.json.error.message, /more than once/);
});

test('too many values and too deep: 400 naming the limit', async () => {
  const values = Array.from({ length: 1_100_000 }, () => '0').join(',');
  const many = await promptlyWithHealth(`{"model":"chat","messages":[{"role":"user"}],"x":[${values}]}`, 3000 * SCALE);
  assert.equal(many.status, 400);
  assert.equal(many.json.error.code, 'json_too_large');
  assert.match(many.json.error.message, /more than 1048576 JSON keys and values/);
  const deep = await post(`{"model":"chat","messages":[{"role":"user"}],"x":${'['.repeat(200)}${']'.repeat(200)}}`);
  assert.equal(deep.status, 400);
  assert.equal(deep.json.error.code, 'json_too_deep');
  assert.match(deep.json.error.message, /more than 128 deep/);
});

test('max_tokens 2^63-1 on a key with tpm 100: 429 (whole limit), never 200, and the key still works', async () => {
  const k = await createKey({ tpm: 100 });
  for (const model of ['chat', 'tiny']) {
    for (let i = 0; i < 5; i++) {
      const r = await post(`{"model":"${model}","max_tokens":${INT64_MAX},"messages":[{"role":"user","content":"hi"}]}`, { key: k.key });
      assert.equal(r.status, 429, `${model} #${i}: ${r.text}`);
      assert.match(r.json.error.message, /more than key key_\w+'s whole limit of 100 tokens per minute/);
    }
  }
  const ok = await post('{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}', { key: k.key });
  assert.equal(ok.status, 200, 'refused requests did not use up the limit');
  assert.equal(ok.headers.get('x-ratelimit-limit-tokens'), '100');
});

test('numbers past int64 or outside documented ranges: 400 naming the field', async () => {
  const cases = [
    ['"max_tokens":1e30', 'max_tokens', 'invalid_type'],
    ['"max_tokens":1000000000000000000000000000000', 'max_tokens', 'invalid_value'],
    ['"max_tokens":9223372036854775808', 'max_tokens', 'invalid_value'],
    ['"max_tokens":0', 'max_tokens', 'invalid_value'],
    ['"max_tokens":-1', 'max_tokens', 'invalid_value'],
    ['"max_completion_tokens":0', 'max_completion_tokens', 'invalid_value'],
    ['"temperature":2.5', 'temperature', 'invalid_value'],
    ['"top_p":-0.5', 'top_p', 'invalid_value'],
    ['"presence_penalty":9', 'presence_penalty', 'invalid_value'],
    ['"n":0', 'n', 'invalid_value'],
    ['"top_logprobs":21', 'top_logprobs', 'invalid_value'],
    ['"seed":18446744073709551616', 'seed', 'invalid_value'],
  ];
  for (const [field, param, code] of cases) {
    for (const model of ['chat', 'tiny']) {
      const r = await post(`{"model":"${model}","messages":[{"role":"user","content":"hi"}],${field}}`);
      assert.equal(r.status, 400, `${field}: ${r.text}`);
      assert.equal(r.json.error.param, param, field);
      assert.equal(r.json.error.code, code, field);
      assert.match(r.json.error.message, new RegExp(`"${param}"`), field);
    }
  }
  // Through the SDK too: the error reaches the client as a BadRequestError naming the field.
  const client = new OpenAI({ baseURL: `${gw.baseURL}/v1`, apiKey: MK, maxRetries: 0, timeout: 30000 * SCALE });
  await assert.rejects(client.chat.completions.create({ model: 'tiny', max_tokens: 0, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && e.param === 'max_tokens' && /at least 1/.test(e.message));
});

test('max_tokens past 2^32 on the local model is not cut to a few tokens', async () => {
  // The worker cast max_tokens to int: 2^32 + 1 became 1.
  const r = await post('{"model":"tiny-short","temperature":0,"max_tokens":4294967297,"messages":[{"role":"user","content":"hi"}]}');
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.usage.completion_tokens > 1, `${r.json.usage.completion_tokens} tokens`);
});

test('NUL in the model and invalid UTF-8 in content: 400 naming the field, not a 500 (or 502 after retries)', async () => {
  const nul = await post('{"model":"a\\u0000b","messages":[{"role":"user","content":"hi"}]}');
  assert.equal(nul.status, 400);
  assert.equal(nul.json.error.param, 'model');
  assert.match(nul.json.error.message, /"model" is not a valid JSON string: \\u0000 \(NUL\)/);
  const bytes = Buffer.concat([Buffer.from('{"model":"tiny","messages":[{"role":"user","content":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('"}]}')]);
  const utf8 = await post(bytes);
  assert.equal(utf8.status, 400, utf8.text);
  assert.equal(utf8.json.error.param, 'messages');
  assert.match(utf8.json.error.message, /"messages\[0\]\.content" is not a valid JSON string: invalid UTF-8/);
  const surrogate = await post('{"model":"tiny","messages":[{"role":"user","content":"\\ud800"}]}');
  assert.equal(surrogate.status, 400);
  assert.match(surrogate.json.error.message, /unpaired UTF-16 surrogate/);
  // The engine was never asked: it answered nothing, so nothing was retried.
  const ok = await post('{"model":"tiny","max_tokens":3,"messages":[{"role":"user","content":"h\\u00e9 \\ud83d\\ude00"}]}');
  assert.equal(ok.status, 200, ok.text);
});

test('any bytes in a field name, model or path: error bodies and log lines stay valid JSON', async () => {
  const mark = Buffer.concat(stderrBytes).length;
  const key = Buffer.concat([Buffer.from('{"model":"chat","messages":[{"role":"user"}],"'), Buffer.from([0xc0, 0xaf, 0x01]), Buffer.from('":1}')]);
  const r1 = await post(key); // refused on the key itself: its path holds the raw bytes
  assert.equal(r1.status, 400);
  assert.match(r1.json.error.message, /"\ufffd\ufffd\u0001" is not a valid JSON string: invalid UTF-8/);
  const model = String.raw`quote\" \\ \n\t\u0001 \u00e9 \ud83d\ude00`; // JSON text, escapes and all
  const r2 = await post(`{"model":"${model}","messages":[{"role":"user"}]}`);
  assert.equal(r2.status, 404);
  const decoded = JSON.parse(`"${model}"`);
  assert.equal(r2.json.error.message.split("'")[1], decoded);
  const r3 = await raw(`POST /v1/\xff\xfe/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${MK}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`);
  assert.ok(r3.status >= 400 && r3.status < 500, String(r3.status));
  await waitFor(() => gw.logs.some((l) => l.status === 404 && l.model === decoded), { what: 'the 404 log line' });
  const lines = Buffer.concat(stderrBytes).subarray(mark).toString('latin1').split('\n').filter((l) => l.startsWith('{'));
  assert.ok(lines.length >= 3);
  for (const line of lines) {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(line, 'latin1'));
    assert.doesNotThrow(() => JSON.parse(text), text);
  }
});

test('two Authorization headers: 400 duplicate_header; a key with a trailing tab is accepted', async () => {
  const body = '{"model":"chat","messages":[{"role":"user","content":"hi"}]}';
  const two = await raw(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${MK}\r\n` +
    `Authorization: Bearer sk-stratus-other\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  assert.equal(two.status, 400);
  assert.equal(two.json.error.code, 'duplicate_header');
  assert.match(two.json.error.message, /2 Authorization headers/);
  const k = await createKey({ name: 'tab' });
  const tab = await raw(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${k.key}\t\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  assert.equal(tab.status, 200, JSON.stringify(tab.json));
  const lead = await raw(`GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \t${k.key} \t\r\nConnection: close\r\n\r\n`);
  assert.equal(lead.status, 200, JSON.stringify(lead.json));
});

test('stratus check refuses a master key of only whitespace, naming the reference, never the value', () => {
  const file = writeConfig('auth: { master_key: env:BLANK_MK }\n');
  for (const value of ['                    ', '  sk-0123456789abcdefgh  ']) {
    let out = '';
    let code = 0;
    try {
      execFileSync(BIN, ['check', '--config', file], { env: { ...process.env, BLANK_MK: value }, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      code = e.status;
      out = `${e.stdout}${e.stderr}`;
    }
    assert.equal(code, 2, out);
    assert.match(out, /master_key \(env:BLANK_MK\) (resolves to only whitespace|starts or ends with a space)/);
    if (value.trim()) assert.ok(!out.includes(value.trim()), 'the value is never printed');
  }
});
