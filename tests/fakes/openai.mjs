// A fake OpenAI-compatible upstream for integration tests. It speaks the real wire format
// (chat.completion objects, SSE chat.completion.chunk events ending in `data: [DONE]`,
// OpenAI error bodies) and injects real faults. The behaviour is chosen by the model name
// the gateway sends upstream (the target's `model`):
//   ok | echo                plain answers (echo repeats the last user message)
//   stream-N                 a stream of N content chunks (default 3 for any stream)
//   echo-split-N             streams the last user message in pieces of N characters
//   fail-500 | fail-503      HTTP 5xx with an OpenAI error body
//   fail-429                 HTTP 429 with Retry-After: 1
//   fail-400                 HTTP 400 {"error":{"message":"bad thing"}} (must pass through)
//   hang                     accepts the request and never answers
//   slow-first-byte-MS       waits MS before answering
//   reset-mid-stream         sends 2 chunks, then destroys the socket
//   garbled                  200 with a body that is not JSON (stream: garbage, then close)
//   slow-stream              one chunk every 50 ms for 60 s (client-disconnect tests)
//   big-stream               20000 chunks of ~1 KB (20 MB) as fast as the socket takes them;
//                            rec.progress counts the chunks written so far
//   *cached*                 usage reports 8 of the 11 prompt tokens as cached
//   big-MB[-pause-MS]        a 200 chat.completion of about MB MiB (content padding), written
//                            in 64 KiB pieces (pausing MS before its last bytes)
//   fail-401-echo | fail-403-echo | fail-400-echo
//                            that status with a body quoting the Authorization header it got
//                            (a careless upstream echoing the gateway's key)
//   garbage-mid-stream       2 chunks, then an event that is not JSON, then more and [DONE]
//   logprobs-phish           answers "phishing"; with logprobs asked, the first token's
//                            top_logprobs are ph 0.6, legit 0.3, Ph 0.05, xyz 0.05
//   json-ok | json-bad       answers {"sender":"bob"} | {"name":1} (structured-output tests)
//   knob-NAME                behaviour set at run time through `knobs[NAME]`:
//                            { delay: ms before answering, fail: HTTP status to fail with,
//                              failTimes: fail this many requests (failStatus, 503) then answer }
//                            (a target that slows down, breaks and recovers mid-test)
// Every request is recorded in `requests` ({method, path, headers, body, closedEarly}).
import http from 'node:http';

function chunk(id, model, content, extra = {}) {
  return {
    id, object: 'chat.completion.chunk', created: 1700000000, model,
    choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: null }],
    ...extra,
  };
}

function sse(res, obj) {
  res.write(`data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function startFake({ port = 0 } = {}) {
  const requests = [];
  const knobs = {};
  const sockets = new Set();
  let seq = 0;

  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const part of req) raw += part;
    let body = null;
    try { body = raw ? JSON.parse(raw) : null; } catch { body = { unparsable: raw }; }
    const rec = { method: req.method, path: req.url, headers: req.headers, body, closedEarly: false, done: false };
    requests.push(rec);
    res.on('close', () => { if (!rec.done) rec.closedEarly = true; });
    const finish = () => { rec.done = true; };

    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'ok', object: 'model' }] }));
      return finish();
    }
    const model = body?.model ?? '';
    const id = `chatcmpl-${++seq}`;
    const error = (status, message, type, headers = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify({ error: { message, type, code: null, param: null } }));
      finish();
    };

    if (model === 'hang') return; // never answer
    if (model === 'fail-500') return error(500, 'internal failure', 'server_error');
    if (model === 'fail-503') return error(503, 'overloaded', 'server_error');
    if (model === 'fail-429') return error(429, 'rate limited', 'rate_limit_error', { 'retry-after': '1' });
    if (model === 'fail-400') return error(400, 'bad thing', 'invalid_request_error');
    const echo = /^fail-(401|403|400)-echo$/.exec(model);
    if (echo) {
      return error(Number(echo[1]), `Incorrect API key provided: ${req.headers.authorization ?? 'none'}`,
        'invalid_request_error');
    }
    const big = /^big-(\d+)(?:-pause-(\d+))?$/.exec(model);
    if (big && !body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      const piece = 'x'.repeat(64 << 10);
      res.write(`{"id":"${id}","object":"chat.completion","created":1700000000,"model":"${model}",` +
        '"choices":[{"index":0,"message":{"role":"assistant","content":"');
      for (let i = 0; i < Number(big[1]) * 16; i++) {
        if (!res.write(piece)) await new Promise((r) => { res.once('drain', r); res.once('close', r); });
        if (res.destroyed) return finish();
      }
      if (big[2]) await sleep(Number(big[2]));
      res.end('"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}');
      return finish();
    }
    const slow = /^slow-first-byte-(\d+)$/.exec(model);
    if (slow) await sleep(Number(slow[1]));
    const knob = /^knob-(.+)$/.exec(model);
    if (knob) {
      const k = knobs[knob[1]] ?? {};
      if (k.delay) await sleep(k.delay);
      if (k.failTimes > 0) {
        k.failTimes--;
        return error(k.failStatus ?? 503, `knob ${knob[1]} fails (more to come)`, 'server_error');
      }
      if (k.fail) return error(k.fail, `knob ${knob[1]} fails`, 'server_error');
    }

    if (req.url === '/v1/embeddings') {
      const inputs = Array.isArray(body.input) ? body.input : [body.input];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        object: 'list', model,
        data: inputs.map((_, i) => ({ object: 'embedding', index: i, embedding: [0.1, 0.2, 0.3] })),
        usage: { prompt_tokens: inputs.length * 2, total_tokens: inputs.length * 2 },
      }));
      return finish();
    }
    if (req.url === '/v1/completions' && !body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id, object: 'text_completion', created: 1700000000, model,
        choices: [{ index: 0, text: `completed:${body.prompt}`, finish_reason: 'stop' }],
        usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 },
      }));
      return finish();
    }
    if (req.url !== '/v1/chat/completions' && req.url !== '/v1/completions') {
      return error(404, `fake has no ${req.url}`, 'invalid_request_error');
    }

    if (model === 'garbled' && !body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"id": "x", "choices": [ this is not json');
      return finish();
    }

    const lastUser = [...(body.messages ?? [])].reverse().find((m) => m.role === 'user');
    const text = model === 'echo' ? String(lastUser?.content ?? '')
      : model === 'logprobs-phish' ? 'phishing'
        : model === 'json-ok' ? '{"sender":"bob"}'
          : model === 'json-bad' ? '{"name":1}' : 'Hello from the fake';
    let logprobs = null;
    if (model === 'logprobs-phish' && body.logprobs) {
      const alt = (token, p) => ({ token, logprob: Math.log(p), bytes: [...Buffer.from(token)] });
      const top = [alt('ph', 0.6), alt('legit', 0.3), alt('Ph', 0.05), alt('xyz', 0.05)];
      logprobs = { content: [{ ...alt('ph', 0.6), top_logprobs: top.slice(0, body.top_logprobs ?? 0) }], refusal: null };
    }

    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id, object: 'chat.completion', created: 1700000000, model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop', logprobs }],
        usage: { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16,
          ...(model.includes('cached') ? { prompt_tokens_details: { cached_tokens: 8 } } : {}) },
      }));
      return finish();
    }

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (model === 'garbled') {
      res.write('this is not an event stream at all');
      await sleep(10);
      res.destroy();
      return;
    }
    if (model === 'big-stream') {
      const pad = 'x'.repeat(1000);
      rec.progress = 0;
      for (let i = 0; i < 20000; i++) {
        if (res.destroyed) return;
        const ok = res.write(`data: ${JSON.stringify(chunk(id, model, `${i}:${pad}`))}\n\n`);
        rec.progress = i + 1;
        if (!ok) await new Promise((r) => res.once('drain', r));
      }
      sse(res, '[DONE]');
      res.end();
      return finish();
    }
    const split = /^echo-split-(\d+)$/.exec(model);
    if (split) { // the last user message in pieces of N bytes (text split across chunks)
      const t = String(lastUser?.content ?? '');
      const size = Number(split[1]);
      sse(res, { ...chunk(id, model, ''), choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
      for (let i = 0; i < t.length; i += size) sse(res, chunk(id, model, t.slice(i, i + size)));
      sse(res, { ...chunk(id, model, null), choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
      sse(res, '[DONE]');
      res.end();
      return finish();
    }
    const m = /^stream-(\d+)$/.exec(model);
    const n = model === 'slow-stream' ? 1200 : m ? Number(m[1]) : 3;
    const gap = model === 'slow-stream' ? 50 : 2;
    const includeUsage = body.stream_options?.include_usage === true;
    const usageNull = includeUsage ? { usage: null } : {};
    sse(res, { ...chunk(id, model, '', usageNull), choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    for (let i = 0; i < n; i++) {
      if (res.destroyed) return;
      if (model === 'reset-mid-stream' && i === 2) { res.destroy(); return; }
      if (model === 'garbage-mid-stream' && i === 2) res.write('data: {"choices": oops this is not JSON\n\n');
      sse(res, chunk(id, model, model === 'echo' ? text : `tok${i} `, usageNull));
      await sleep(gap);
    }
    sse(res, { ...chunk(id, model, null, usageNull), choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    if (includeUsage) {
      sse(res, { id, object: 'chat.completion.chunk', created: 1700000000, model, choices: [],
        usage: { prompt_tokens: 11, completion_tokens: n, total_tokens: 11 + n } });
    }
    sse(res, '[DONE]');
    res.end();
    finish();
  });
  server.keepAliveTimeout = 30000;
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = server.address().port;
  return {
    port: actual,
    url: `http://127.0.0.1:${actual}/v1`,
    requests,
    knobs,
    get connections() { return sockets.size; },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--port');
  const fake = await startFake({ port: i > 0 ? Number(process.argv[i + 1]) : 9001 });
  console.log(`fake OpenAI upstream on ${fake.url}`);
}
