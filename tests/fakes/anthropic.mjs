// A fake Anthropic Messages API for integration tests. It speaks the real wire format
// (POST /v1/messages; message objects; SSE `event:`/`data:` pairs message_start, ping,
// content_block_start/delta/stop, message_delta, message_stop, error; Anthropic error bodies)
// and checks what it receives: the x-api-key and anthropic-version headers and the body's
// shape (required max_tokens, roles, content blocks, image sources, tools). Violations get
// the 4xx the real API would give, so a translation bug fails a test.
//
// Behaviour by the model name the gateway sends:
//   echo | ok | anything else   the reply is the last user message's text
//   tool-call                   text "Checking." + a tool_use of the first tool → stop_reason tool_use
//   describe                    the reply lists the request's blocks (types, image sources)
//   stream-N                    N words "w1 … wN" (streams: one text_delta per word)
//   fail-500 | fail-529 | fail-429 (retry-after: 1) | fail-400   Anthropic error bodies
//   hang                        never answers
//   slow-first-byte-MS          waits MS, then answers like echo
//   reset-mid-stream            message_start, a block, 2 deltas, then the socket is destroyed
//   garbled                     200 with a body that is not JSON / not SSE
//   stream-error                message_start, one delta, then an `error` event (overloaded)
//   slow-stream                 one word every 50 ms for 60 s
// Words are tokens: input_tokens counts the words of system + messages; output is the reply
// cut at max_tokens (stop_reason max_tokens) or before a stop sequence (stop_sequence).
import http from 'node:http';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const words = (s) => String(s ?? '').split(/\s+/).filter(Boolean);

function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.filter((b) => b.type === 'text').map((b) => b.text).join(' ');
  return '';
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// Returns an error message naming what is wrong, or null for a valid Messages request.
function validate(body) {
  if (!isObj(body)) return 'body: expected a JSON object';
  if (typeof body.model !== 'string' || !body.model) return 'model: Field required';
  if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return 'max_tokens: Field required (a positive integer)';
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages: at least one message is required';
  if (body.system !== undefined && typeof body.system !== 'string') {
    if (!Array.isArray(body.system) || body.system.some((b) => !isObj(b) || b.type !== 'text' || typeof b.text !== 'string'))
      return 'system: must be a string or a list of text blocks';
  }
  for (const [i, m] of body.messages.entries()) {
    if (!isObj(m)) return `messages.${i}: must be an object`;
    if (m.role !== 'user' && m.role !== 'assistant') return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    if (typeof m.content === 'string') continue;
    if (!Array.isArray(m.content) || m.content.length === 0) return `messages.${i}.content: must be a string or a non-empty list`;
    for (const [j, b] of m.content.entries()) {
      const where = `messages.${i}.content.${j}`;
      if (!isObj(b)) return `${where}: must be an object`;
      if (b.type === 'text') {
        if (typeof b.text !== 'string' || !b.text) return `${where}.text: text content blocks must be non-empty`;
      } else if (b.type === 'image') {
        const s = isObj(b.source) ? b.source : {};
        if (s.type === 'base64') {
          if (!/^image\/(png|jpeg|gif|webp)$/.test(s.media_type ?? '') || typeof s.data !== 'string') return `${where}.source: invalid base64 image source`;
        } else if (s.type === 'url') {
          if (!/^https?:\/\//.test(s.url ?? '')) return `${where}.source.url: invalid url`;
        } else return `${where}.source.type: must be base64 or url`;
        if (m.role !== 'user') return `${where}: images are only allowed in user messages`;
      } else if (b.type === 'tool_use') {
        if (m.role !== 'assistant' || typeof b.id !== 'string' || typeof b.name !== 'string' || !isObj(b.input))
          return `${where}: invalid tool_use block`;
      } else if (b.type === 'tool_result') {
        if (m.role !== 'user' || typeof b.tool_use_id !== 'string') return `${where}: invalid tool_result block`;
      } else return `${where}.type: unknown content block type '${b.type}'`;
    }
  }
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return 'tools: must be a list';
    for (const [i, t] of body.tools.entries())
      if (!isObj(t) || typeof t.name !== 'string' || !isObj(t.input_schema)) return `tools.${i}: needs name and input_schema`;
  }
  if (body.stop_sequences !== undefined && (!Array.isArray(body.stop_sequences) || body.stop_sequences.some((s) => typeof s !== 'string')))
    return 'stop_sequences: must be a list of strings';
  return null;
}

function describe(body) {
  const parts = [];
  for (const m of body.messages) {
    const blocks = typeof m.content === 'string' ? [{ type: 'text' }] : m.content;
    for (const b of blocks) {
      if (b.type === 'image') parts.push(`${m.role}:image:${b.source.type}:${b.source.media_type ?? b.source.url}`);
      else parts.push(`${m.role}:${b.type}`);
    }
  }
  return parts.join(' ');
}

// The reply for a request: content blocks, output token count, stop reason.
function reply(body, model) {
  const input = words(typeof body.system === 'string' ? body.system : textOf(body.system ?? []))
    .length + body.messages.reduce((n, m) => n + words(textOf(m.content)).length, 0);
  if (model === 'tool-call') {
    const name = body.tools?.[0]?.name ?? 'none';
    return { input: Math.max(1, input), blocks: [{ type: 'text', text: 'Checking.' },
      { type: 'tool_use', id: 'toolu_01', name, input: { location: 'Paris', unit: 'celsius' } }], output: 12, stop: 'tool_use', stopSeq: null };
  }
  let out;
  const n = /^stream-(\d+)$/.exec(model);
  if (n) out = Array.from({ length: Number(n[1]) }, (_, i) => `w${i + 1}`);
  else if (model === 'reset-mid-stream' || model === 'stream-error') out = Array.from({ length: 10 }, (_, i) => `w${i + 1}`);
  else if (model === 'slow-stream') out = Array.from({ length: 1200 }, (_, i) => `w${i + 1}`);
  else if (model === 'describe') out = words(describe(body));
  else {
    const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
    out = words(textOf(lastUser?.content));
  }
  let stop = 'end_turn', stopSeq = null;
  const cut = out.findIndex((w) => body.stop_sequences?.includes(w));
  if (cut >= 0) { stopSeq = out[cut]; out = out.slice(0, cut); stop = 'stop_sequence'; }
  if (out.length > body.max_tokens) { out = out.slice(0, body.max_tokens); stop = 'max_tokens'; stopSeq = null; }
  return { input: Math.max(1, input), words: out, blocks: [{ type: 'text', text: out.join(' ') }], output: out.length, stop, stopSeq };
}

export async function startAnthropicFake({ port = 0, apiKey = 'test-anthropic-key' } = {}) {
  const requests = [];
  const sockets = new Set();
  let seq = 0;

  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const part of req) raw += part;
    let body = null;
    try { body = raw ? JSON.parse(raw) : null; } catch { body = undefined; }
    const rec = { method: req.method, path: req.url, headers: req.headers, body, raw, closedEarly: false, done: false };
    requests.push(rec);
    res.on('close', () => { if (!rec.done) rec.closedEarly = true; });
    const finish = () => { rec.done = true; };
    const error = (status, type, message, headers = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${seq}`, ...headers });
      res.end(JSON.stringify({ type: 'error', error: { type, message } }));
      finish();
    };

    if (req.method !== 'POST' || req.url !== '/v1/messages') return error(404, 'not_found_error', `no route ${req.method} ${req.url}`);
    if (req.headers['x-api-key'] !== apiKey) return error(401, 'authentication_error', 'invalid x-api-key');
    if (!req.headers['anthropic-version']) return error(400, 'invalid_request_error', 'anthropic-version: header is required');
    if (!/^application\/json/.test(req.headers['content-type'] ?? '')) return error(400, 'invalid_request_error', 'content-type must be application/json');
    if (body === undefined) return error(400, 'invalid_request_error', 'There was an issue with your request body: not valid JSON');
    let why;
    try { why = validate(body); } catch (e) { why = `malformed request: ${e.message}`; } // never crash the test process
    if (why) return error(400, 'invalid_request_error', why);

    const model = body.model;
    if (model === 'hang') return;
    if (model === 'fail-500') return error(500, 'api_error', 'Internal server error');
    if (model === 'fail-529') return error(529, 'overloaded_error', 'Overloaded');
    if (model === 'fail-429') return error(429, 'rate_limit_error', 'Number of requests has exceeded your rate limit', { 'retry-after': '1' });
    if (model === 'fail-400') return error(400, 'invalid_request_error', 'bad thing');
    const slow = /^slow-first-byte-(\d+)$/.exec(model);
    if (slow) await sleep(Number(slow[1]));

    const id = `msg_${String(++seq).padStart(4, '0')}`;
    if (model === 'garbled') {
      res.writeHead(200, { 'content-type': body.stream ? 'text/event-stream' : 'application/json' });
      res.end(body.stream ? 'event: message_start\ndata: {this is not json\n\n' : 'this is not json');
      return finish();
    }
    const r = reply(body, model);
    if (!body.stream) {
      if (model === 'reset-mid-stream') { res.destroy(); return; }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id, type: 'message', role: 'assistant', model, content: r.blocks, stop_reason: r.stop, stop_sequence: r.stopSeq,
        usage: { input_tokens: r.input, output_tokens: r.output, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      }));
      return finish();
    }

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const event = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    event('message_start', { message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null,
      usage: { input_tokens: r.input, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 } } });
    event('ping', {});
    if (model === 'tool-call') {
      event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Checking.' } });
      event('content_block_stop', { index: 0 });
      const tool = r.blocks[1];
      event('content_block_start', { index: 1, content_block: { type: 'tool_use', id: tool.id, name: tool.name, input: {} } });
      const json = JSON.stringify(tool.input);
      for (const part of [json.slice(0, 5), json.slice(5, 17), json.slice(17)])
        event('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: part } });
      event('content_block_stop', { index: 1 });
    } else {
      event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      const gap = model === 'slow-stream' ? 50 : 1;
      for (const [i, w] of r.words.entries()) {
        if (res.destroyed) return;
        if (model === 'reset-mid-stream' && i === 2) { await sleep(20); res.destroy(); return; }
        event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: i ? ` ${w}` : w } });
        if (model === 'stream-error' && i === 0) {
          event('error', { error: { type: 'overloaded_error', message: 'Overloaded' } });
          res.end();
          return finish();
        }
        if (gap > 1 || i % 16 === 15) await sleep(gap);
      }
      event('content_block_stop', { index: 0 });
    }
    event('message_delta', { delta: { stop_reason: r.stop, stop_sequence: r.stopSeq }, usage: { output_tokens: r.output } });
    event('message_stop', {});
    res.end();
    finish();
  });
  server.keepAliveTimeout = 30000;
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = server.address().port;
  return {
    port: actual,
    url: `http://127.0.0.1:${actual}`,
    requests,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
