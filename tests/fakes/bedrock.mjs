// A fake AWS Bedrock runtime (Converse and ConverseStream) for integration tests. It speaks
// the real wire format — JSON for /converse; for /converse-stream the binary AWS event-stream
// (prelude, headers, payload, both CRC32s) encoded with @smithy/eventstream-codec, the
// AWS SDK's own codec — and it verifies every request's SigV4 signature with
// @smithy/signature-v4 (the AWS SDK's signer) before doing anything else, the way AWS does:
// a wrong key, region, service, date or a single changed byte gets 403.
//
// Behaviour by model id (decoded from the path):
//   echo | ok | ids like anthropic.claude-…:0 | anything else   reply = last user text
//   tool-call          "Checking." + toolUse of the first tool → stopReason tool_use
//   describe           the reply lists the request's blocks (types, image formats)
//   stream-N           N words (one contentBlockDelta each; messages split across writes)
//   fail-500 | fail-503 | fail-429 (retry-after: 1) | fail-400   AWS error responses
//   hang | slow-first-byte-MS | reset-mid-stream | garbled | slow-stream
//   bad-crc            a stream whose third message has a corrupted message CRC
//   stream-exception   messageStart, one delta, then a throttlingException message
import http from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { toUtf8, fromUtf8 } from '@smithy/util-utf8';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const words = (s) => String(s ?? '').split(/\s+/).filter(Boolean);
export const codec = new EventStreamCodec(toUtf8, fromUtf8);

// One event-stream message, as bytes.
export function eventMessage(eventType, payload, messageType = 'event', extraHeaders = {}) {
  const headers = {
    ':message-type': { type: 'string', value: messageType },
    ':content-type': { type: 'string', value: 'application/json' },
    ...extraHeaders,
  };
  if (messageType === 'event') headers[':event-type'] = { type: 'string', value: eventType };
  return codec.encode({ headers, body: fromUtf8(JSON.stringify(payload)) });
}

function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s ?? '');
  return m ? new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
}

// Verifies SigV4 like AWS: recompute the signature over what was received. Returns null when
// valid, else [errortype, message].
async function verifySignature(req, raw, { region, accessKeyId, secretAccessKey, sessionToken }) {
  const auth = req.headers.authorization;
  if (!auth) return ['MissingAuthenticationTokenException', 'Missing Authentication Token'];
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return ['IncompleteSignatureException', `Authorization header is malformed: ${auth.slice(0, 60)}`];
  const [, keyId, day, scopeRegion, service, signedList, signature] = m;
  if (keyId !== accessKeyId) return ['UnrecognizedClientException', 'The security token included in the request is invalid.'];
  if (scopeRegion !== region || service !== 'bedrock') return ['InvalidSignatureException', `Credential should be scoped to a valid region/service: got ${scopeRegion}/${service}`];
  const date = parseAmzDate(req.headers['x-amz-date']);
  if (!date || !req.headers['x-amz-date'].startsWith(day)) return ['InvalidSignatureException', 'x-amz-date is missing or does not match the credential scope'];
  if (Math.abs(Date.now() - date.getTime()) > 5 * 60 * 1000) return ['InvalidSignatureException', 'Signature expired'];
  const signed = signedList.split(';');
  for (const h of ['host', 'x-amz-date']) if (!signed.includes(h)) return ['InvalidSignatureException', `${h} must be signed`];
  if (sessionToken && (req.headers['x-amz-security-token'] !== sessionToken || !signed.includes('x-amz-security-token')))
    return ['UnrecognizedClientException', 'The security token included in the request is invalid.'];
  const headers = {};
  for (const h of signed) {
    if (req.headers[h] === undefined) return ['InvalidSignatureException', `signed header ${h} is missing`];
    headers[h] = req.headers[h];
  }
  const [path, query = ''] = req.url.split('?');
  const [hostname, port] = req.headers.host.split(':');
  const request = new HttpRequest({
    method: req.method, protocol: 'http:', hostname, port: port ? Number(port) : undefined, path,
    query: Object.fromEntries(new URLSearchParams(query)), headers, body: raw,
  });
  const signer = new SignatureV4({ service: 'bedrock', region, sha256: Sha256, applyChecksum: false,
    credentials: { accessKeyId, secretAccessKey, sessionToken } });
  const expected = await signer.sign(request, { signingDate: date });
  const want = /Signature=([0-9a-f]{64})/.exec(expected.headers.authorization)[1];
  if (want !== signature) return ['InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.'];
  return null;
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function validate(body) {
  if (!isObj(body)) return 'body must be a JSON object';
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages: at least one message is required';
  for (const [i, m] of body.messages.entries()) {
    if (!isObj(m)) return `messages.${i}: must be an object`;
    if (m.role !== 'user' && m.role !== 'assistant') return `messages.${i}.role: must be user or assistant`;
    if (!Array.isArray(m.content) || m.content.length === 0) return `messages.${i}.content: must be a non-empty list`;
    for (const [j, b] of m.content.entries()) {
      const where = `messages.${i}.content.${j}`;
      if (!isObj(b)) return `${where}: must be an object`;
      const kinds = Object.keys(b);
      if (kinds.length !== 1) return `${where}: exactly one of text, image, toolUse, toolResult`;
      const k = kinds[0];
      if (k === 'text') { if (typeof b.text !== 'string' || !b.text) return `${where}.text: must be a non-empty string`; }
      else if (k === 'image') {
        if (!isObj(b.image) || !['png', 'jpeg', 'gif', 'webp'].includes(b.image.format) || typeof b.image.source?.bytes !== 'string') return `${where}.image: invalid image block`;
      } else if (k === 'toolUse') {
        const t = b.toolUse;
        if (!isObj(t) || typeof t.toolUseId !== 'string' || typeof t.name !== 'string' || !isObj(t.input)) return `${where}.toolUse: needs toolUseId, name and an object input`;
      } else if (k === 'toolResult') {
        const t = b.toolResult;
        if (!isObj(t) || typeof t.toolUseId !== 'string' || !Array.isArray(t.content)) return `${where}.toolResult: needs toolUseId and a content list`;
        for (const [k2, c] of t.content.entries()) {
          const ok = isObj(c) && Object.keys(c).length === 1
            && (typeof c.text === 'string' || (c.json !== undefined && c.json !== null && typeof c.json === 'object'));
          if (!ok) return `${where}.toolResult.content.${k2}: exactly one of text (a string) or json`;
        }
        if (t.status !== undefined && t.status !== 'success' && t.status !== 'error') return `${where}.toolResult.status: must be success or error`;
      } else return `${where}: unknown block ${k}`;
    }
  }
  if (body.system !== undefined && (!Array.isArray(body.system) || body.system.some((b) => !isObj(b) || typeof b.text !== 'string'))) return 'system: must be a list of {text}';
  const ic = body.inferenceConfig;
  if (ic !== undefined) {
    if (!isObj(ic)) return 'inferenceConfig: must be an object';
    for (const k of Object.keys(ic)) if (!['maxTokens', 'temperature', 'topP', 'stopSequences'].includes(k)) return `inferenceConfig.${k}: unknown field`;
    if (ic.maxTokens !== undefined && (!Number.isInteger(ic.maxTokens) || ic.maxTokens < 1)) return 'inferenceConfig.maxTokens: must be a positive integer';
    if (ic.temperature !== undefined && typeof ic.temperature !== 'number') return 'inferenceConfig.temperature: must be a number';
    if (ic.topP !== undefined && typeof ic.topP !== 'number') return 'inferenceConfig.topP: must be a number';
    if (ic.stopSequences !== undefined && (!Array.isArray(ic.stopSequences) || ic.stopSequences.some((x) => typeof x !== 'string')))
      return 'inferenceConfig.stopSequences: must be a list of strings';
  }
  if (body.toolConfig !== undefined) {
    if (!isObj(body.toolConfig)) return 'toolConfig: must be an object';
    const tools = body.toolConfig.tools;
    if (!Array.isArray(tools) || tools.some((t) => !isObj(t) || typeof t.toolSpec?.name !== 'string' || !isObj(t.toolSpec?.inputSchema?.json)))
      return 'toolConfig.tools: each needs toolSpec.name and toolSpec.inputSchema.json';
  }
  for (const k of Object.keys(body)) if (!['messages', 'system', 'inferenceConfig', 'toolConfig', 'additionalModelRequestFields'].includes(k)) return `${k}: unknown field`;
  return null;
}

const textOf = (content) => content.filter((b) => typeof b.text === 'string').map((b) => b.text).join(' ');

function reply(body, model) {
  const input = Math.max(1, words((body.system ?? []).map((b) => b.text).join(' ')).length
    + body.messages.reduce((n, m) => n + words(textOf(m.content)).length, 0));
  if (model === 'tool-call') {
    const name = body.toolConfig?.tools?.[0]?.toolSpec?.name ?? 'none';
    return { input, tool: { toolUseId: 'tooluse_01', name, input: { location: 'Paris', unit: 'celsius' } }, words: ['Checking.'], output: 12, stop: 'tool_use' };
  }
  let out;
  const n = /^stream-(\d+)$/.exec(model);
  if (n) out = Array.from({ length: Number(n[1]) }, (_, i) => `w${i + 1}`);
  else if (['reset-mid-stream', 'bad-crc', 'stream-exception'].includes(model)) out = Array.from({ length: 10 }, (_, i) => `w${i + 1}`);
  else if (model === 'slow-stream') out = Array.from({ length: 1200 }, (_, i) => `w${i + 1}`);
  else if (model === 'describe') {
    out = body.messages.flatMap((m) => m.content.map((b) => `${m.role}:${Object.keys(b)[0]}${b.image ? `:${b.image.format}` : ''}`));
  } else {
    const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
    out = words(textOf(lastUser?.content ?? []));
  }
  let stop = 'end_turn';
  const stops = body.inferenceConfig?.stopSequences ?? [];
  const cut = out.findIndex((w) => stops.includes(w));
  if (cut >= 0) { out = out.slice(0, cut); stop = 'stop_sequence'; }
  const max = body.inferenceConfig?.maxTokens;
  if (max !== undefined && out.length > max) { out = out.slice(0, max); stop = 'max_tokens'; }
  return { input, words: out, output: out.length, stop };
}

export async function startBedrockFake({ port = 0, region = 'us-east-1', accessKeyId = 'AKIDEXAMPLE',
  secretAccessKey = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken } = {}) {
  const requests = [];
  const sockets = new Set();
  const creds = { region, accessKeyId, secretAccessKey, sessionToken };

  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const part of req) raw += part;
    let body;
    try { body = JSON.parse(raw); } catch { body = undefined; }
    const route = /^\/model\/([^/]+)\/(converse|converse-stream)$/.exec(req.url);
    const rec = { method: req.method, path: req.url, modelId: route ? decodeURIComponent(route[1]) : null, headers: req.headers,
      body, raw, signatureOk: false, closedEarly: false, done: false };
    requests.push(rec);
    res.on('close', () => { if (!rec.done) rec.closedEarly = true; });
    const finish = () => { rec.done = true; };
    const error = (status, type, message, headers = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`, 'x-amzn-requestid': 'fake', ...headers });
      res.end(JSON.stringify({ message }));
      finish();
    };
    const bad = await verifySignature(req, raw, creds);
    if (bad) return error(403, bad[0], bad[1]);
    rec.signatureOk = true;
    if (req.method !== 'POST' || !route) return error(404, 'UnknownOperationException', `no route ${req.method} ${req.url}`);
    if (body === undefined) return error(400, 'SerializationException', 'body is not valid JSON');
    let why;
    try { why = validate(body); } catch (e) { why = `malformed request: ${e.message}`; } // never crash the test process
    if (why) return error(400, 'ValidationException', why);

    const model = rec.modelId;
    const stream = route[2] === 'converse-stream';
    if (model === 'hang') return;
    if (model === 'fail-500') return error(500, 'InternalServerException', 'internal failure');
    if (model === 'fail-503') return error(503, 'ServiceUnavailableException', 'service unavailable');
    if (model === 'fail-429') return error(429, 'ThrottlingException', 'Too many requests, please wait before trying again.', { 'retry-after': '1' });
    if (model === 'fail-400') return error(400, 'ValidationException', 'bad thing');
    const slow = /^slow-first-byte-(\d+)$/.exec(model);
    if (slow) await sleep(Number(slow[1]));
    if (model === 'garbled') {
      res.writeHead(200, { 'content-type': stream ? 'application/vnd.amazon.eventstream' : 'application/json' });
      res.end(stream ? Buffer.from('definitely not an event stream, far too long to be a prelude') : 'this is not json');
      return finish();
    }
    const r = reply(body, model);
    if (!stream) {
      if (model === 'reset-mid-stream') { res.destroy(); return; }
      const content = [{ text: r.words.join(' ') }];
      if (r.tool) content.push({ toolUse: r.tool });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ output: { message: { role: 'assistant', content } }, stopReason: r.stop,
        usage: { inputTokens: r.input, outputTokens: r.output, totalTokens: r.input + r.output }, metrics: { latencyMs: 1 } }));
      return finish();
    }

    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'fake' });
    const pad = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
    let sent = 0;
    const send = (type, payload) => {
      const bytes = eventMessage(type, { ...payload, p: pad.slice(0, 4 + (sent % 30)) });
      sent++;
      if (sent % 3 === 0 && bytes.length > 8) { // split a message across two writes
        res.write(bytes.subarray(0, 7));
        res.write(bytes.subarray(7));
      } else res.write(bytes);
    };
    send('messageStart', { role: 'assistant' });
    send('contentBlockDelta', { contentBlockIndex: 0, delta: { text: r.words[0] ?? '' } });
    const gap = model === 'slow-stream' ? 50 : 0;
    for (let i = 1; i < r.words.length; i++) {
      if (res.destroyed) return;
        if (model === 'reset-mid-stream' && i === 2) { await sleep(20); res.destroy(); return; }
      if (model === 'bad-crc') {
        const bytes = Buffer.from(eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: ` ${r.words[i]}` } }));
        bytes[bytes.length - 1] ^= 0xff;
        res.end(bytes);
        return finish();
      }
      if (model === 'stream-exception') {
        res.end(eventMessage(null, { message: 'Too many tokens, please wait before trying again.' }, 'exception',
          { ':exception-type': { type: 'string', value: 'throttlingException' } }));
        return finish();
      }
      send('contentBlockDelta', { contentBlockIndex: 0, delta: { text: ` ${r.words[i]}` } });
      if (gap) await sleep(gap);
    }
    send('contentBlockStop', { contentBlockIndex: 0 });
    if (r.tool) {
      send('contentBlockStart', { contentBlockIndex: 1, start: { toolUse: { toolUseId: r.tool.toolUseId, name: r.tool.name } } });
      const json = JSON.stringify(r.tool.input);
      for (const part of [json.slice(0, 7), json.slice(7, 20), json.slice(20)])
        send('contentBlockDelta', { contentBlockIndex: 1, delta: { toolUse: { input: part } } });
      send('contentBlockStop', { contentBlockIndex: 1 });
    }
    send('messageStop', { stopReason: r.stop });
    send('metadata', { usage: { inputTokens: r.input, outputTokens: r.output, totalTokens: r.input + r.output }, metrics: { latencyMs: 1 } });
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

// Signs a request for the fake with the AWS SDK's signer (tests of the fake itself).
export async function signForTest({ url, body, region = 'us-east-1', accessKeyId = 'AKIDEXAMPLE',
  secretAccessKey = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken }) {
  const u = new URL(url);
  const signer = new SignatureV4({ service: 'bedrock', region, sha256: Sha256, applyChecksum: false,
    credentials: { accessKeyId, secretAccessKey, sessionToken } });
  const signed = await signer.sign(new HttpRequest({
    method: 'POST', protocol: u.protocol, hostname: u.hostname, port: Number(u.port), path: u.pathname,
    headers: { host: u.host, 'content-type': 'application/json' }, body,
  }));
  return signed.headers;
}
