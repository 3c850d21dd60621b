// Process-level contracts: the CLI, start-up and config errors, SIGTERM drain, secrets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, writeConfig, waitFor, BIN, SCALE } from './lib/gateway.mjs';

const wrapper = process.env.STRATUS_WRAPPER ? process.env.STRATUS_WRAPPER.split(/\s+/).filter(Boolean) : [];
function run(...args) {
  const cmd = [...wrapper, BIN, ...args];
  return spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', timeout: 60000 * SCALE });
}

test('--version and help', () => {
  const v = run('--version');
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^stratus \d+\.\d+\.\d+\n$/);
  const h = run('help');
  assert.equal(h.status, 0);
  assert.match(h.stdout, /serve --config FILE/);
  assert.match(h.stdout, /check --config FILE/);
  const bad = run('frobnicate');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown command 'frobnicate'/);
});

test('check accepts the shipped default config', () => {
  const r = run('check', '--config', 'config/stratus.yaml');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /config\/stratus\.yaml: ok/);
});

test('check reports FILE:LINE:COL for a typo and exits 2', () => {
  const file = writeConfig('listen: 127.0.0.1:8080\nbackends:\n  - name: up\n    type: openai\n    base_ulr: http://x/v1\n');
  const r = run('check', '--config', file);
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trim(), `${file}:5:5: unknown key 'base_ulr' in backends[0] (did you mean 'base_url'?)`);
});

test('serve refuses a bad config with the same message and exit 2', () => {
  const file = writeConfig('models:\n  - name: m\n    targets:\n      - { backend: nope }\n');
  const r = run('serve', '--config', file);
  assert.equal(r.status, 2);
  assert.match(r.stderr, new RegExp(`^${file}:4:20: model 'm' target 1: unknown backend 'nope'`));
});

test('a missing secret is a clear start-up error that names the variable', () => {
  const file = writeConfig('backends:\n  - { name: up, type: openai, base_url: "http://127.0.0.1:1/v1", api_key: env:STRATUS_TEST_UNSET_KEY }\n');
  const r = run('check', '--config', file);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /api_key of backend 'up': environment variable STRATUS_TEST_UNSET_KEY is not set/);
});

test('the default config starts with nothing else running; /ready turns 200 and still names the unreachable backends', async () => {
  const { readFileSync } = await import('node:fs');
  const gw = await startGateway(readFileSync('config/stratus.yaml', 'utf8'));
  try {
    assert.equal((await fetch(`${gw.baseURL}/health`)).status, 200);
    // Every model group can be served by the demo model once it is loaded, so the gateway
    // is ready even though nothing listens on llama-server's or Ollama's port in CI.
    const ready = await waitFor(async () => {
      const r = await fetch(`${gw.baseURL}/ready`);
      const j = await r.json();
      return j.backends.slice(1).every((b) => b.reason !== 'not probed yet') && j.backends[0].ready
        ? { status: r.status, j } : null;
    }, { timeout: 30000, what: 'first probes and the demo model' });
    assert.equal(ready.status, 200);
    assert.equal(ready.j.status, 'ready');
    assert.deepEqual(ready.j.backends.map((b) => [b.name, b.ready]), [['demo', true], ['llama-server', false], ['ollama', false]]);
    assert.match(ready.j.backends[1].reason, /unreachable/);
    assert.deepEqual(ready.j.models.map((m) => [m.name, m.ready, m.usable_targets]), [['demo', true, 1], ['local', true, 1]]);
    const models = await (await fetch(`${gw.baseURL}/v1/models`)).json();
    assert.deepEqual(models.data.map((m) => m.id), ['demo', 'local']);
    const r = await fetch(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'local', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-stratus-backend'), 'demo');
  } finally {
    assert.equal(await gw.stop(), 0);
  }
});

test('SIGTERM lets an in-flight stream finish, refuses new connections, exits 0', async () => {
  const fake = await startFake();
  const gw = await startGateway(config({
    backends: [{ name: 'up', url: fake.url }],
    models: [{ name: 'chat', targets: [{ backend: 'up', model: 'stream-40' }] }],
    extra: 'shutdown_grace_ms: 20000',
  }));
  try {
    const res = await fetch(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(res.status, 200);
    const textPromise = res.text();
    gw.child.kill('SIGTERM');
    await gw.waitForLog((l) => l.event === 'shutdown');
    await assert.rejects(fetch(`${gw.baseURL}/health`), 'new connections are refused while draining');
    const text = await textPromise.catch((e) => { throw new Error(`stream cut: ${e.message}\n${gw.stderr.slice(-4000)}`); });
    assert.match(text, /tok39 /);
    assert.match(text, /data: \[DONE\]\n\n$/);
    assert.equal(await gw.exited, 0);
    assert.ok(gw.logs.some((l) => l.event === 'stopped'));
  } finally {
    await gw.stop('SIGKILL');
    await fake.close();
  }
});

test('SIGTERM with a stuck request gives up after shutdown_grace_ms and still exits 0', async () => {
  const fake = await startFake();
  const gw = await startGateway(config({
    backends: [{ name: 'up', url: fake.url, timeout_ms: 60000 }],
    models: [{ name: 'chat', targets: [{ backend: 'up', model: 'hang' }] }],
    extra: `shutdown_grace_ms: ${Math.round(300 * SCALE)}`,
  }));
  try {
    const pending = fetch(`${gw.baseURL}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
    }).catch((e) => e);
    await waitFor(() => fake.requests.length > 0, { what: 'the upstream request' });
    const t0 = Date.now();
    gw.child.kill('SIGTERM');
    assert.equal(await gw.exited, 0);
    assert.ok(Date.now() - t0 < 10000 * SCALE);
    assert.ok(gw.logs.some((l) => l.event === 'shutdown' && /grace/.test(l.message ?? '')) ||
      gw.logs.some((l) => l.event === 'shutdown'));
    await pending;
  } finally {
    await gw.stop('SIGKILL');
    await fake.close();
  }
});

test('resolved secrets never appear in any output', async () => {
  const secret = `sk-live-${Math.random().toString(36).slice(2)}${Date.now()}`;
  const fake = await startFake();
  const gw = await startGateway(config({
    backends: [{ name: 'up', url: fake.url, api_key: 'env:UP_SECRET' }, { name: 'down', url: 'http://127.0.0.1:1/v1', api_key: 'env:UP_SECRET' }],
    models: [{ name: 'chat', targets: [{ backend: 'down', model: 'ok' }, { backend: 'up', model: 'fail-500' }, { backend: 'up', model: 'ok' }] }],
  }), { env: { UP_SECRET: secret } });
  try {
    for (const stream of [false, true]) {
      const r = await fetch(`${gw.baseURL}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'chat', stream, messages: [{ role: 'user', content: 'x' }] }),
      });
      const text = await r.text();
      assert.equal(r.status, 200);
      assert.ok(!text.includes(secret));
    }
    assert.equal(fake.requests.at(-1).headers.authorization, `Bearer ${secret}`, 'the key does reach the upstream');
  } finally {
    await gw.stop();
    await fake.close();
  }
  assert.ok(gw.stderr.includes('env:UP_SECRET'), 'logs show the reference');
  assert.ok(!gw.stderr.includes(secret), 'stderr must not contain the secret');
  assert.ok(!gw.stdout.includes(secret), 'stdout must not contain the secret');
});
