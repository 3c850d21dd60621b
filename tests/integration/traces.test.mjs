// Traces through the real gateway: a client's W3C traceparent is continued (the exported
// span has its trace id and its span as parent; the upstream gets the same trace with the
// gateway's span as parent), a request without one starts a new trace, sampled=0 is
// propagated but not exported, the span carries the GenAI attributes (model, provider,
// tokens, cost, route reason, status) as a fake OTLP collector decodes them, a collector that
// is down, failing or stuck never touches serving (failures and drops counted and logged),
// and with no observability section nothing is exported and a client's traceparent passes
// through unchanged. Every gateway stops on SIGTERM with exit 0 (under ASan: no leaks).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake } from '../fakes/openai.mjs';
import { startCollector } from '../fakes/otlp.mjs';
import { startGateway, config, waitFor, closedPort, SCALE } from './lib/gateway.mjs';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const models = [
  { name: 'chat', targets: [{ backend: 'up', model: 'ok', price: { input: 2, output: 10 } }] },
  { name: 'broken', targets: [{ backend: 'up', model: 'fail-500' }] },
];

let up, collector, gw;
before(async () => {
  up = await startFake();
  collector = await startCollector();
  gw = await startGateway(config({
    backends: [{ name: 'up', url: up.url }],
    models,
    extra: `observability:\n  otlp_endpoint: ${collector.url}\n  service_name: gw-test\n`
      + '  flush_ms: 20\n  headers: { x-tenant: acme }\n',
  }));
});
after(async () => {
  assert.equal(await gw?.stop(), 0);
  await up?.close();
  await collector?.close();
});

async function ask(gateway, model, headers = {}) {
  const res = await fetch(`${gateway.baseURL}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  await res.text();
  return res;
}

const upstreamOf = (res) => up.requests.find((r) => r.headers['x-request-id'] === res.headers.get('x-request-id'))
  ?? up.requests.at(-1);
const spanOf = (pred, what = 'the span') => waitFor(() => collector.spans.find(pred), { what });
const parse = (tp) => /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp ?? '')?.slice(1);

test('a client traceparent is continued: same trace, the client span as parent, the upstream under ours', async () => {
  const before = up.requests.length;
  const res = await ask(gw, 'chat', { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=abc' });
  assert.equal(res.status, 200);
  const span = await spanOf((s) => s.traceId === TRACE);
  assert.equal(span.parentSpanId, PARENT);
  assert.notEqual(span.spanId, PARENT);
  assert.equal(span.kind, 2); // SERVER
  assert.equal(span.name, 'chat chat');
  // the upstream call carries the same trace with the gateway's span as its parent
  const got = up.requests.slice(before).at(-1);
  assert.deepEqual(parse(got.headers.traceparent), [TRACE, span.spanId, '01']);
  assert.equal(got.headers.tracestate, 'vendor=abc');
  // the GenAI attributes, as the collector decoded them
  const a = span.attrs;
  assert.equal(a['gen_ai.operation.name'], 'chat');
  assert.equal(a['gen_ai.request.model'], 'chat');
  assert.equal(a['gen_ai.response.model'], 'ok');
  assert.equal(a['gen_ai.provider.name'], 'openai');
  assert.equal(a['server.address'], '127.0.0.1');
  assert.equal(a['server.port'], up.port);
  assert.equal(a['gen_ai.usage.input_tokens'], 11); // the fake upstream's usage
  assert.equal(a['gen_ai.usage.output_tokens'], 5);
  assert.equal(a['stratus.cost_usd'], 0.000072); // 11 × $2 + 5 × $10 per 1M
  assert.equal(res.headers.get('x-stratus-cost-usd'), '0.00007200');
  assert.equal(`priority; ${a['stratus.route.reason']}`, res.headers.get('x-stratus-route'));
  assert.equal(a['stratus.backend'], 'up');
  assert.equal(a['stratus.attempts'], 1);
  assert.equal(a['http.response.status_code'], 200);
  assert.equal(a['stratus.request_id'], res.headers.get('x-request-id'));
  assert.equal(a['error.type'], undefined);
  assert.equal(span.status.code ?? 0, 0);
  assert.equal(span.resource['service.name'], 'gw-test');
  assert.ok(span.end >= span.start);
  const wall = BigInt(Date.now()) * 1000000n;
  assert.ok(wall - span.end < 60n * 1000000000n, 'timestamps are wall-clock nanoseconds');
  // configured headers reach the collector; the log line names the trace
  assert.ok(collector.exports.some((e) => e.headers['x-tenant'] === 'acme'));
  const log = await gw.waitForLog((l) => l.event === 'request' && l.id === res.headers.get('x-request-id'));
  assert.equal(log.trace_id, TRACE);
  assert.deepEqual(collector.rejected, []);
});

test('without a traceparent (or with an invalid one) a new trace begins', async () => {
  for (const headers of [{}, { traceparent: `00-${TRACE.toUpperCase()}-${PARENT}-01` }]) {
    const before = up.requests.length;
    const res = await ask(gw, 'chat', headers);
    assert.equal(res.status, 200);
    const [trace, parent, flags] = parse(up.requests.slice(before).at(-1).headers.traceparent);
    assert.notEqual(trace, TRACE);
    assert.notEqual(trace, '0'.repeat(32));
    assert.equal(flags, '01'); // sample: 1.0 by default
    const span = await spanOf((s) => s.traceId === trace);
    assert.equal(span.spanId, parent);
    assert.equal(span.parentSpanId, undefined); // a root span
    assert.equal(up.requests.slice(before).at(-1).headers.tracestate, undefined);
  }
});

test('sampled=0 from the client: propagated upstream, not exported', async () => {
  const quiet = 'aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb';
  const before = up.requests.length;
  await ask(gw, 'chat', { traceparent: `00-${quiet}-${PARENT}-00` });
  const [trace, parent, flags] = parse(up.requests.slice(before).at(-1).headers.traceparent);
  assert.equal(trace, quiet);
  assert.notEqual(parent, PARENT);
  assert.equal(flags, '00');
  // a sampled request sent after it is exported; the unsampled one never is
  const marker = 'cccccccccccccccccccccccccccccccc';
  await ask(gw, 'chat', { traceparent: `00-${marker}-${PARENT}-01` });
  await spanOf((s) => s.traceId === marker);
  assert.equal(collector.spans.find((s) => s.traceId === quiet), undefined);
});

test('a failed request: error.type, ERROR status on a 5xx, and a refused one is traced too', async () => {
  const res = await ask(gw, 'broken', { traceparent: `00-${'d'.repeat(32)}-${PARENT}-01` });
  assert.equal(res.status, 502);
  const span = await spanOf((s) => s.traceId === 'd'.repeat(32));
  assert.equal(span.attrs['http.response.status_code'], 502);
  assert.equal(span.attrs['error.type'], '502');
  assert.equal(span.status.code, 2);
  assert.ok(span.status.message.length > 0);
  const missing = await ask(gw, 'nope', { traceparent: `00-${'e'.repeat(32)}-${PARENT}-01` });
  assert.equal(missing.status, 404);
  const refused = await spanOf((s) => s.traceId === 'e'.repeat(32));
  assert.equal(refused.attrs['error.type'], '404');
  assert.equal(refused.status.code ?? 0, 0); // the client's fault: not an error of ours
  assert.equal(refused.attrs['stratus.backend'], undefined);
});

test('off by default: no exporter, a client traceparent passes through unchanged, none is invented', async () => {
  const g = await startGateway(config({ backends: [{ name: 'up', url: up.url }], models }));
  try {
    assert.equal(g.logs.find((l) => l.event === 'traces').otlp_endpoint, null);
    const tp = `00-${TRACE}-${PARENT}-01`;
    let before = up.requests.length;
    await ask(g, 'chat', { traceparent: tp });
    assert.equal(up.requests.slice(before).at(-1).headers.traceparent, tp);
    before = up.requests.length;
    await ask(g, 'chat');
    assert.equal(up.requests.slice(before).at(-1).headers.traceparent, undefined);
  } finally {
    assert.equal(await g.stop(), 0);
  }
});

test('a collector that is down never touches serving: spans fail, counted and logged', async () => {
  const g = await startGateway(config({
    backends: [{ name: 'up', url: up.url }], models,
    extra: `observability: { otlp_endpoint: "http://127.0.0.1:${closedPort}/v1/traces", flush_ms: 10 }\n`,
  }));
  for (let i = 0; i < 3; i++) assert.equal((await ask(g, 'chat')).status, 200);
  const failed = await g.waitForLog((l) => l.event === 'otlp_export_failed', 10000);
  assert.match(failed.error, /connect/i);
  assert.equal(await g.stop(), 0);
  const stopped = g.logs.find((l) => l.event === 'otlp_exporter_stopped');
  assert.equal(stopped.exported, 0);
  assert.equal(stopped.failed, 3);
});

test('a collector failing for a while: the export is retried and arrives', async () => {
  const c = await startCollector();
  c.knobs.failTimes = 2;
  const g = await startGateway(config({
    backends: [{ name: 'up', url: up.url }], models,
    extra: `observability: { otlp_endpoint: "${c.url}", flush_ms: 10 }\n`,
  }));
  try {
    await ask(g, 'chat', { traceparent: `00-${'f'.repeat(32)}-${PARENT}-01` });
    await waitFor(() => c.spans.find((s) => s.traceId === 'f'.repeat(32)), { what: 'the retried span', timeout: 10000 });
    assert.deepEqual(c.exports.map((e) => e.status), [503, 503, 200]);
  } finally {
    assert.equal(await g.stop(), 0);
    await c.close();
  }
  assert.equal(g.logs.find((l) => l.event === 'otlp_exporter_stopped').exported, 1);
});

test('a stuck collector: the bounded queue drops and counts, serving goes on, shutdown is bounded', async () => {
  const c = await startCollector();
  c.knobs.hang = true;
  const g = await startGateway(config({
    backends: [{ name: 'up', url: up.url }], models,
    extra: `observability: { otlp_endpoint: "${c.url}", queue_size: 2, batch_size: 1, flush_ms: 1 }\n`,
  }));
  try {
    // the first span is taken by the stuck export; two fill the queue; the rest are dropped
    for (let i = 0; i < 8; i++) assert.equal((await ask(g, 'chat')).status, 200);
    const full = await g.waitForLog((l) => l.event === 'otlp_queue_full');
    assert.match(full.message, /queue full \(2 spans\)/);
    const t0 = Date.now();
    assert.equal(await g.stop(), 0);
    assert.ok(Date.now() - t0 < 6000 * SCALE, `stopped in ${Date.now() - t0} ms`);
    const stopped = g.logs.find((l) => l.event === 'otlp_exporter_stopped');
    assert.ok(stopped.dropped >= 4, JSON.stringify(stopped));
    assert.equal(stopped.exported, 0);
    assert.equal(stopped.dropped + stopped.failed, 8);
  } finally {
    await c.close();
  }
});
