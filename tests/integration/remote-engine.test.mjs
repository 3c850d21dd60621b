// Remote engines (#14 item 3): `stratus engine --listen HOST:PORT --token …` serves a model
// over TCP (TLS optional) and a gateway routes to it as `type: local` with `url:` — the same
// /stats readiness probe and engine figures, least-busy routing over several engines, token
// checks, and failover when an engine dies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import net from 'node:net';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, waitFor, BIN, SCALE } from './lib/gateway.mjs';

const MODEL = resolve(process.env.STRATUS_TEST_MODEL || 'build/models/tiny.gguf');
const TOKEN = 'engine-token-0123456789abcdef';
const engines = new Set();
let up, certDir;
before(async () => {
  up = await startFake();
  certDir = mkdtempSync(join(tmpdir(), 'stratus-test-engine-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'), '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
});
after(async () => {
  for (const e of engines) e.kill('SIGKILL');
  await up?.close();
  rmSync(certDir, { recursive: true, force: true });
});

const freePort = () => new Promise((res) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
});

// A remote engine on its own port; resolves when it logs engine_ready.
async function startEngine({ tls = false, token = true } = {}) {
  const port = await freePort();
  const args = ['engine', '--model', MODEL, '--listen', `127.0.0.1:${port}`, '--parallel', '2', '--threads', '1',
    '--ctx', '512', '--name', 'tiny'];
  if (token) args.push('--token', 'env:ENGINE_TOKEN');
  if (tls) args.push('--tls-cert', `file:${join(certDir, 'cert.pem')}`, '--tls-key', `file:${join(certDir, 'key.pem')}`);
  const wrapper = process.env.STRATUS_WRAPPER ? process.env.STRATUS_WRAPPER.split(/\s+/).filter(Boolean) : [];
  const cmd = [...wrapper, BIN, ...args];
  const child = spawn(cmd[0], cmd.slice(1), { env: { ...process.env, ENGINE_TOKEN: TOKEN }, stdio: ['ignore', 'ignore', 'pipe'] });
  engines.add(child);
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  child.on('exit', () => engines.delete(child));
  await waitFor(() => log.includes('"engine_ready"') || child.exitCode !== null, { timeout: 60000, what: 'engine_ready' });
  assert.equal(child.exitCode, null, log);
  return { child, port, url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, log: () => log };
}

const yamlFor = (backends, models) => `log: { requests: true }\nbackends:\n${backends.join('\n')}\nmodels:\n${models.join('\n')}\n`;
const complete = (gw, model = 'tiny', extra = {}) => fetch(`${gw.baseURL}/v1/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, ...extra }),
});
const readyBody = async (gw) => (await fetch(`${gw.baseURL}/ready`)).json();

test('a remote engine serves through the gateway with its token; /ready shows its load; a wrong token is refused', async () => {
  const engine = await startEngine();
  // The engine asks for its token on everything but /health.
  assert.equal((await fetch(`${engine.url}/health`)).status, 200);
  assert.equal((await fetch(`${engine.url}/stats`)).status, 401);
  assert.equal((await fetch(`${engine.url}/stats`, { headers: { authorization: 'Bearer nope' } })).status, 401);
  const gw = await startGateway(yamlFor(
    [`  - { name: far, type: local, url: "${engine.url}", token: env:ENGINE_TOKEN }`,
      `  - { name: wrong, type: local, url: "${engine.url}", token: env:WRONG_TOKEN }`],
    ['  - { name: tiny, targets: [ { backend: far, model: tiny } ] }',
      '  - { name: wrongly, targets: [ { backend: wrong, model: tiny } ] }']),
  { env: { ENGINE_TOKEN: TOKEN, WRONG_TOKEN: 'not-the-token-at-all' } });
  try {
    await waitFor(async () => (await readyBody(gw)).backends.find((b) => b.name === 'far').ready, { timeout: 10000, what: 'far ready' });
    const body = await readyBody(gw);
    const far = body.backends.find((b) => b.name === 'far');
    assert.equal(far.engine.slots, 2, 'the remote engine reports its slots through /stats');
    const wrong = body.backends.find((b) => b.name === 'wrong');
    assert.equal(wrong.ready, false);
    assert.match(wrong.reason, /refused our token \(401\)/);
    const res = await complete(gw);
    assert.equal(res.status, 200, await res.clone().text());
    const json = await res.json();
    assert.equal(json.object, 'text_completion');
    assert.ok(json.usage.completion_tokens > 0);
    assert.equal(res.headers.get('x-stratus-backend'), 'far');
    const refused = await complete(gw, 'wrongly');
    assert.equal(refused.status, 503, 'a remote engine that is not ready is not tried');
    assert.match((await refused.json()).error.message, /refused our token/);
  } finally {
    assert.equal(await gw.stop(), 0);
    engine.child.kill('SIGTERM');
  }
});

test('over TLS: the gateway trusts the engine through ca:, and refuses it without', async () => {
  const engine = await startEngine({ tls: true });
  const gw = await startGateway(yamlFor(
    [`  - { name: sure, type: local, url: "${engine.url}", token: env:ENGINE_TOKEN, ca: "${join(certDir, 'cert.pem')}" }`,
      `  - { name: unsure, type: local, url: "${engine.url}", token: env:ENGINE_TOKEN }`],
    ['  - { name: tiny, targets: [ { backend: sure, model: tiny } ] }',
      '  - { name: untrusted, targets: [ { backend: unsure, model: tiny } ] }']),
  { env: { ENGINE_TOKEN: TOKEN } });
  try {
    await waitFor(async () => (await readyBody(gw)).backends.find((b) => b.name === 'sure').ready, { timeout: 10000, what: 'sure ready' });
    assert.equal((await complete(gw)).status, 200);
    const unsure = (await readyBody(gw)).backends.find((b) => b.name === 'unsure');
    assert.equal(unsure.ready, false, 'a certificate nobody vouched for is not trusted');
    assert.match(unsure.reason, /unreachable/);
  } finally {
    assert.equal(await gw.stop(), 0);
    engine.child.kill('SIGTERM');
  }
});

test('two engines share the load (least-busy) and a killed one fails over to the next target', async () => {
  const [a, b] = [await startEngine(), await startEngine()];
  const gw = await startGateway(yamlFor(
    [`  - { name: ea, type: local, url: "${a.url}", token: env:ENGINE_TOKEN, connect_timeout_ms: 500 }`,
      `  - { name: eb, type: local, url: "${b.url}", token: env:ENGINE_TOKEN, connect_timeout_ms: 500 }`,
      `  - { name: cloud, type: openai, base_url: "${up.url}" }`],
    ['  - { name: tiny, route: least-busy, retry: { retries: 0 }, targets: [ { backend: ea, model: tiny }, { backend: eb, model: tiny } ] }',
      '  - { name: resilient, retry: { retries: 0 }, targets: [ { backend: ea, model: tiny }, { backend: cloud, model: ok } ] }']),
  { env: { ENGINE_TOKEN: TOKEN } });
  try {
    await waitFor(async () => (await readyBody(gw)).backends.filter((x) => x.ready).length === 3, { timeout: 10000, what: 'all ready' });
    const answers = await Promise.all(Array.from({ length: 6 }, () => complete(gw, 'tiny', { max_tokens: 24 })));
    const by = answers.map((r) => r.headers.get('x-stratus-backend'));
    assert.ok(answers.every((r) => r.status === 200));
    assert.ok(by.includes('ea') && by.includes('eb'), `both engines took requests: ${by}`);
    assert.equal((await complete(gw, 'resilient')).headers.get('x-stratus-backend'), 'ea');
    a.child.kill('SIGKILL');
    // At once (before a probe has noticed) and after: answered by the next target.
    for (let i = 0; i < 3; i++) {
      const res = await complete(gw, 'resilient');
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(res.headers.get('x-stratus-backend'), 'cloud');
    }
    await waitFor(async () => !(await readyBody(gw)).backends.find((x) => x.name === 'ea').ready,
      { timeout: 10000 * SCALE, what: 'ea not ready' });
  } finally {
    assert.equal(await gw.stop(), 0);
    b.child.kill('SIGTERM');
  }
});

test('config: url and model_path exclude each other; engine-side settings are refused with url:', async () => {
  const { execFile } = await import('node:child_process');
  const check = (yaml) => new Promise((res) => {
    const dir = mkdtempSync(join(tmpdir(), 'stratus-test-'));
    const file = join(dir, 'c.yaml');
    execFileSync('sh', ['-c', `cat > ${file}`], { input: yaml });
    execFile(BIN, ['check', '--config', file], (err, stdout, stderr) => { rmSync(dir, { recursive: true, force: true }); res({ code: err?.code ?? 0, stderr }); });
  });
  let r = await check('backends:\n  - { name: e, type: local, url: "http://h:1", model_path: m.gguf }\nmodels:\n  - { name: t, targets: [ { backend: e } ] }\n');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /c\.yaml:2:\d+: .*'model_path' is the remote engine's own setting/);
  r = await check('backends:\n  - { name: e, type: local, url: "http://h:1", parallel: 4 }\nmodels:\n  - { name: t, targets: [ { backend: e } ] }\n');
  assert.match(r.stderr, /'parallel' is the remote engine's own setting/);
  r = await check('backends:\n  - { name: e, type: local, model_path: m.gguf, token: env:X }\nmodels:\n  - { name: t, targets: [ { backend: e } ] }\n');
  assert.match(r.stderr, /'token' is for a remote engine \(with url:\)/);
});
