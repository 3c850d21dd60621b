// A fake OpenTelemetry collector for integration tests: an OTLP/HTTP receiver at
// POST /v1/traces that decodes the JSON encoding (ExportTraceServiceRequest) the way a
// collector would and keeps every span, flattened with its resource and its attributes
// decoded by type. Anything that does not decode is answered 400 and kept in `rejected`.
//   failTimes: answer the next N exports with `failStatus` (503) — a collector restarting
//   hang: accept exports and never answer — a collector stuck behind a load balancer
// `spans`: [{ traceId, spanId, parentSpanId, name, kind, start, end, status, attrs, resource }]
// `exports`: [{ headers, spanCount }]
import http from 'node:http';

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

function value(v) {
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('doubleValue' in v) return Number(v.doubleValue);
  if ('intValue' in v) {
    // proto3 JSON: int64 as a decimal string (numbers are accepted too)
    if (typeof v.intValue === 'string' && !/^-?\d+$/.test(v.intValue)) throw new Error(`bad intValue ${v.intValue}`);
    return Number(v.intValue);
  }
  throw new Error(`unknown AnyValue ${JSON.stringify(v)}`);
}

function attributes(list = []) {
  const out = {};
  for (const a of list) {
    if (typeof a.key !== 'string') throw new Error('attribute without key');
    if (a.key in out) throw new Error(`duplicate attribute ${a.key}`);
    out[a.key] = value(a.value);
  }
  return out;
}

// Throws on anything a collector would refuse.
export function decode(body) {
  const req = JSON.parse(body);
  const spans = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        if (!HEX32.test(s.traceId) || /^0+$/.test(s.traceId)) throw new Error(`bad traceId ${s.traceId}`);
        if (!HEX16.test(s.spanId) || /^0+$/.test(s.spanId)) throw new Error(`bad spanId ${s.spanId}`);
        if (s.parentSpanId !== undefined && s.parentSpanId !== '' && !HEX16.test(s.parentSpanId)) throw new Error(`bad parentSpanId ${s.parentSpanId}`);
        const start = BigInt(s.startTimeUnixNano), end = BigInt(s.endTimeUnixNano);
        if (end < start) throw new Error('span ends before it starts');
        spans.push({
          traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId || undefined,
          name: s.name, kind: s.kind, start, end, status: s.status ?? {},
          attrs: attributes(s.attributes), resource, scope: ss.scope,
        });
      }
    }
  }
  return spans;
}

export async function startCollector({ port = 0 } = {}) {
  const spans = [], exports = [], rejected = [];
  const knobs = { failTimes: 0, failStatus: 503, hang: false };
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') { res.writeHead(404); return res.end(); }
      if (knobs.hang) return; // never answers
      if (knobs.failTimes > 0) {
        knobs.failTimes--;
        exports.push({ headers: req.headers, spanCount: 0, status: knobs.failStatus });
        res.writeHead(knobs.failStatus, { 'content-type': 'application/json' });
        return res.end('{}');
      }
      const body = Buffer.concat(chunks).toString();
      try {
        if (!/^application\/json/.test(req.headers['content-type'] ?? '')) throw new Error('content-type is not application/json');
        const got = decode(body);
        spans.push(...got);
        exports.push({ headers: req.headers, spanCount: got.length, status: 200 });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}'); // ExportTraceServiceResponse, nothing rejected
      } catch (e) {
        rejected.push({ error: e.message, body });
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: e.message }));
      }
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const actual = server.address().port;
  return {
    port: actual,
    url: `http://127.0.0.1:${actual}/v1/traces`,
    spans, exports, rejected, knobs,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
