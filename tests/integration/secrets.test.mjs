// Secret references in remote stores (#18): aws-sm:, ssm: (with the SSM → Secrets Manager
// indirection) and vault: (token and AppRole) resolve at start against fake AWS and Vault
// servers that speak the real protocols and check SigV4 / Vault tokens; a rotated secret
// reaches the upstream after a scheduled refresh or a SIGHUP without breaking 64 streams in
// flight; an unreachable store fails the start with the reference named, and at refresh
// keeps the last good value (logged once, not every second); no value ever appears in a log
// line, a response or `stratus check` output.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startFake } from '../fakes/openai.mjs';
import { startAwsSecretsFake } from '../fakes/aws-secrets.mjs';
import { startVaultFake } from '../fakes/vault.mjs';
import { startGateway, writeConfig, config, waitFor, BIN, SCALE } from './lib/gateway.mjs';

const run = promisify(execFile);
const KEY_ID = 'AKIDSTRATUSTEST', SECRET = 'stratus-test-aws-secret-key-0123456789';
const VAULT_TOKEN = 'hvs.stratus-test-root';
let up, aws, vault;
before(async () => {
  up = await startFake();
  aws = await startAwsSecretsFake({ region: 'eu-west-1', accessKeyId: KEY_ID, secretAccessKey: SECRET });
  vault = await startVaultFake({ token: VAULT_TOKEN, approle: { roleId: 'role-stratus', secretId: 'sid-stratus-1' } });
});
after(async () => { await up?.close(); await aws?.close(); await vault?.close(); });

// Every value a test puts in a store, to grep the gateway's outputs for.
const values = new Set();
const sm = (name, v) => { values.add(typeof v === 'string' ? v : Object.values(v).join('|')); aws.setSecret(name, typeof v === 'string' ? v : JSON.stringify(v)); };
const param = (name, v) => { values.add(v); aws.setParameter(name, v, 'SecureString'); };
const kv = (path, fields) => { for (const v of Object.values(fields)) values.add(v); vault.put(path, fields); };

const env = (extra = {}) => ({
  AWS_ACCESS_KEY_ID: KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET, AWS_REGION: 'eu-west-1',
  AWS_ENDPOINT_URL_SSM: aws.url, VAULT_ADDR: vault.url, VAULT_TOKEN, ...extra,
});
const secretsSection = ({ refresh = 0, extra = '' } = {}) =>
  `secrets:\n  refresh_s: ${refresh}\n  timeout_ms: ${Math.round(2000 * SCALE)}\n` +
  `  aws: { secrets_manager_url: "${aws.url}" }\n${extra}`;

const chat = (gw, model, extra = {}) => fetch(`${gw.baseURL}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }),
});
// The Authorization header the upstream saw on its last request for `model`.
const seenKey = (model) => {
  const r = up.requests.filter((q) => q.body?.model === model).at(-1);
  return r?.headers.authorization;
};
const noValueIn = (text, where) => {
  for (const v of values) assert.ok(!text.includes(v), `a secret value appears in ${where}`);
};

test('aws-sm (with #field), ssm (SecureString, and pointing at aws-sm) and vault resolve at start; signed requests only', async () => {
  sm('prod/openai', { api_key: 'sk-sm-field-1', other: 'unused-sm-field' });
  param('/stratus/ssm-key', 'sk-ssm-1');
  sm('prod/pointed', 'sk-via-ssm-1');
  param('/stratus/pointer', 'aws-sm:prod/pointed');
  kv('secret/stratus/up', { api_key: 'sk-vault-1' });
  const be = (name, ref) => ({ name, url: up.url, api_key: ref });
  const yaml = config({
    extra: secretsSection(),
    backends: [be('a', 'aws-sm:prod/openai#api_key'), be('b', 'ssm:/stratus/ssm-key'),
      be('c', 'ssm:/stratus/pointer'), be('d', 'vault:secret/stratus/up#api_key')],
    models: ['a', 'b', 'c', 'd'].map((n) => ({ name: `m-${n}`, targets: [{ backend: n, model: `m-${n}` }] })),
  });
  const signedBefore = aws.requests.length;
  const gw = await startGateway(yaml, { env: env() });
  try {
    for (const [n, want] of [['a', 'sk-sm-field-1'], ['b', 'sk-ssm-1'], ['c', 'sk-via-ssm-1'], ['d', 'sk-vault-1']]) {
      const res = await chat(gw, `m-${n}`);
      const body = await res.text();
      assert.equal(res.status, 200, body);
      assert.equal(seenKey(`m-${n}`), `Bearer ${want}`);
      noValueIn(body, 'a response');
    }
    const calls = aws.requests.slice(signedBefore);
    assert.ok(calls.length >= 4, 'the gateway asked AWS');
    assert.ok(calls.every((c) => c.signatureOk), 'every AWS call carried a valid SigV4 signature');
    assert.deepEqual([...new Set(calls.map((c) => c.target))].sort(),
      ['AmazonSSM.GetParameter', 'secretsmanager.GetSecretValue']);
    assert.ok(calls.filter((c) => c.target === 'AmazonSSM.GetParameter').every((c) => c.body.WithDecryption === true));
  } finally { await gw.stop(); }
  assert.equal(gw.exitCode, 0, `clean exit (ASan: no leak)\n${gw.stderr.slice(-3000)}`);
  noValueIn(gw.stderr, 'the log');
});

test('a rotated secret reaches the upstream after the scheduled refresh; 64 streams in flight all finish', async () => {
  sm('prod/rotating', 'sk-rot-1');
  const yaml = config({
    extra: secretsSection({ refresh: 1 }),
    backends: [{ name: 'up', url: up.url, api_key: 'aws-sm:prod/rotating' }],
    // held 3 s upstream before streaming: in flight across the refresh, certainly
    models: [{ name: 'chat', targets: [{ backend: 'up', model: 'slow-first-byte-3000' }] },
      { name: 'quick', targets: [{ backend: 'up', model: 'ok' }] }],
  });
  const gw = await startGateway(yaml, { env: env() });
  try {
    assert.equal((await chat(gw, 'quick')).status, 200);
    assert.equal(seenKey('ok'), 'Bearer sk-rot-1');
    const streams = Array.from({ length: 64 }, async () => {
      const res = await chat(gw, 'chat', { stream: true });
      const text = await res.text();
      return { status: res.status, done: text.includes('data: [DONE]'), end: Date.now() };
    });
    await waitFor(() => up.requests.filter((q) => q.body?.model === 'slow-first-byte-3000').length >= 64,
      { timeout: 5000, what: '64 streams upstream' });
    sm('prod/rotating', 'sk-rot-2');
    const reloaded = await gw.waitForLog((l) => l.event === 'config_reloaded' && l.cause === 'secrets', 8000 * SCALE);
    const reloadedAt = Date.now();
    assert.match(reloaded.secrets_changed, /backends\[up\]\.api_key aws-sm:prod\/rotating/);
    assert.equal((await chat(gw, 'quick')).status, 200);
    assert.equal(seenKey('ok'), 'Bearer sk-rot-2', 'a request after the refresh carries the new key');
    const results = await Promise.all(streams);
    assert.deepEqual(results.filter((r) => r.status !== 200 || !r.done), [], 'every stream finished');
    assert.ok(results.every((r) => r.end > reloadedAt), 'the streams were still open when the new key came in');
    const old = up.requests.filter((q) => q.body?.model === 'slow-first-byte-3000');
    assert.ok(old.every((q) => q.headers.authorization === 'Bearer sk-rot-1'), 'the streams started on the old key');
    const metrics = await (await fetch(`${gw.baseURL}/metrics`)).text();
    assert.match(metrics, /^stratus_secret_refreshes_total\{result="changed"\} [1-9]/m);
    noValueIn(metrics, '/metrics');
  } finally { await gw.stop(); }
  assert.equal(gw.exitCode, 0, `clean exit (ASan: no leak)\n${gw.stderr.slice(-3000)}`);
  noValueIn(gw.stderr, 'the log');
});

test('SIGHUP picks up a rotated secret at once (refresh_s: 0 turns the schedule off)', async () => {
  kv('secret/stratus/hup', { api_key: 'sk-hup-1' });
  const yaml = config({
    extra: secretsSection({ refresh: 0 }),
    backends: [{ name: 'up', url: up.url, api_key: 'vault:secret/stratus/hup#api_key' }],
    models: [{ name: 'quick', targets: [{ backend: 'up', model: 'hup-model' }] }],
  });
  const gw = await startGateway(yaml, { env: env() });
  try {
    await chat(gw, 'quick');
    assert.equal(seenKey('hup-model'), 'Bearer sk-hup-1');
    kv('secret/stratus/hup', { api_key: 'sk-hup-2' });
    await new Promise((r) => setTimeout(r, 1500)); // no schedule: nothing changes by itself
    await chat(gw, 'quick');
    assert.equal(seenKey('hup-model'), 'Bearer sk-hup-1');
    gw.child.kill('SIGHUP');
    await gw.waitForLog((l) => l.event === 'config_reloaded' && l.cause === 'reload');
    await chat(gw, 'quick');
    assert.equal(seenKey('hup-model'), 'Bearer sk-hup-2');
  } finally { await gw.stop(); }
  assert.equal(gw.exitCode, 0, `clean exit (ASan: no leak)\n${gw.stderr.slice(-3000)}`);
  noValueIn(gw.stderr, 'the log');
});

test('an unreachable store fails the start naming the reference; at refresh the last good value stays (logged once)', async () => {
  sm('prod/outage', 'sk-out-1');
  const yaml = config({
    extra: secretsSection({ refresh: 1 }),
    backends: [{ name: 'up', url: up.url, api_key: 'aws-sm:prod/outage' }],
    models: [{ name: 'quick', targets: [{ backend: 'up', model: 'outage-model' }] }],
  });
  // At start: no gateway, an error naming the reference and the reason.
  aws.fault('unavailable');
  const file = writeConfig(yaml);
  const start = await run(BIN, ['serve', '--config', file, '--listen', '127.0.0.1:0'], { env: { ...process.env, ...env() } })
    .then(() => null, (e) => e);
  assert.ok(start, 'the gateway must not start');
  assert.equal(start.code, 2);
  assert.match(start.stderr, /api_key of backend 'up': aws-sm:prod\/outage: secretsmanager answered HTTP 503/);
  aws.fault(null);

  const gw = await startGateway(yaml, { env: env() });
  try {
    await chat(gw, 'quick');
    assert.equal(seenKey('outage-model'), 'Bearer sk-out-1');
    await aws.pause(); // connection refused from now on
    sm('prod/outage', 'sk-out-2');
    await gw.waitForLog((l) => l.event === 'secret_refresh_failed', 5000 * SCALE);
    await new Promise((r) => setTimeout(r, 2500 * SCALE)); // two more failing refreshes
    const failures = gw.logs.filter((l) => l.event === 'secret_refresh_failed');
    assert.equal(failures.length, 1, 'the same failure is logged once, not every refresh');
    assert.match(failures[0].error, /aws-sm:prod\/outage: .*unreachable/);
    assert.equal((await chat(gw, 'quick')).status, 200);
    assert.equal(seenKey('outage-model'), 'Bearer sk-out-1', 'the last good value stays in use');
    assert.match(await (await fetch(`${gw.baseURL}/metrics`)).text(), /^stratus_secret_refreshes_total\{result="failed"\} [1-9]/m);
    await aws.resume();
    await gw.waitForLog((l) => l.event === 'secret_refresh_recovered', 5000 * SCALE);
    await gw.waitForLog((l) => l.event === 'config_reloaded' && l.cause === 'secrets', 5000 * SCALE);
    await chat(gw, 'quick');
    assert.equal(seenKey('outage-model'), 'Bearer sk-out-2');
  } finally { await gw.stop(); }
  assert.equal(gw.exitCode, 0, `clean exit (ASan: no leak)\n${gw.stderr.slice(-3000)}`);
  noValueIn(gw.stderr, 'the log');
});

test('a wrong AWS secret key is refused by SigV4 and the start says so', async () => {
  sm('prod/sig', 'sk-sig-1');
  const yaml = config({
    extra: secretsSection(),
    backends: [{ name: 'up', url: up.url, api_key: 'aws-sm:prod/sig' }],
    models: [{ name: 'quick', targets: [{ backend: 'up', model: 'ok' }] }],
  });
  const file = writeConfig(yaml);
  const e = await run(BIN, ['serve', '--config', file, '--listen', '127.0.0.1:0'],
    { env: { ...process.env, ...env({ AWS_SECRET_ACCESS_KEY: `${SECRET}x` }) } }).then(() => null, (x) => x);
  assert.ok(e);
  assert.match(e.stderr, /aws-sm:prod\/sig: secretsmanager answered HTTP 4\d\d InvalidSignatureException/);
  assert.ok(!e.stderr.includes(SECRET), 'the AWS secret key is not printed');
});

test('vault with AppRole logs in, and logs in again when its token is revoked', async () => {
  kv('secret/stratus/approle', { api_key: 'sk-approle-1' });
  const yaml = config({
    extra: secretsSection({ refresh: 1, extra: `  vault:\n    address: "${vault.url}"\n    approle: { role_id: role-stratus, secret_id: env:STRATUS_T_SECRET_ID }\n` }),
    backends: [{ name: 'up', url: up.url, api_key: 'vault:secret/stratus/approle#api_key' }],
    models: [{ name: 'quick', targets: [{ backend: 'up', model: 'approle-model' }] }],
  });
  const gw = await startGateway(yaml, { env: env({ VAULT_TOKEN: '', STRATUS_T_SECRET_ID: 'sid-stratus-1' }) });
  try {
    await chat(gw, 'quick');
    assert.equal(seenKey('approle-model'), 'Bearer sk-approle-1');
    const logins = () => vault.requests.filter((r) => r.path === '/v1/auth/approle/login').length;
    const before = logins();
    vault.revokeTokens();
    kv('secret/stratus/approle', { api_key: 'sk-approle-2' });
    await gw.waitForLog((l) => l.event === 'config_reloaded' && l.cause === 'secrets', 5000 * SCALE);
    await chat(gw, 'quick');
    assert.equal(seenKey('approle-model'), 'Bearer sk-approle-2');
    assert.ok(logins() > before, 'a refused token led to a new login');
  } finally { await gw.stop(); }
  assert.equal(gw.exitCode, 0, `clean exit (ASan: no leak)\n${gw.stderr.slice(-3000)}`);
  noValueIn(gw.stderr, 'the log');
});

test('stratus check: remote references are syntax-checked offline; --resolve fetches them', async () => {
  sm('prod/check', 'sk-check-1');
  const good = writeConfig(config({
    extra: secretsSection(),
    backends: [{ name: 'up', url: up.url, api_key: 'aws-sm:prod/check' }],
    models: [{ name: 'quick', targets: [{ backend: 'up', model: 'ok' }] }],
  }));
  const calls = aws.requests.length;
  const offline = await run(BIN, ['check', '--config', good], { env: { ...process.env, ...env() } });
  assert.match(offline.stdout, /ok \(1 backend, 1 model\)/);
  assert.match(offline.stdout, /1 secret reference in a remote store: syntax checked, not fetched/);
  assert.equal(aws.requests.length, calls, 'check without --resolve calls no store');
  const online = await run(BIN, ['check', '--config', good, '--resolve'], { env: { ...process.env, ...env() } });
  assert.match(online.stdout, /1 secret reference resolved \(1 remote\)/);
  assert.ok(aws.requests.length > calls);
  noValueIn(offline.stdout + offline.stderr + online.stdout + online.stderr, 'check output');

  const missing = writeConfig(config({
    extra: secretsSection(),
    backends: [{ name: 'up', url: up.url, api_key: 'aws-sm:prod/not-there' }],
    models: [{ name: 'quick', targets: [{ backend: 'up', model: 'ok' }] }],
  }));
  await run(BIN, ['check', '--config', missing], { env: { ...process.env, ...env() } }); // syntax is fine
  const e = await run(BIN, ['check', '--config', missing, '--resolve'], { env: { ...process.env, ...env() } }).then(() => null, (x) => x);
  assert.equal(e?.code, 2);
  assert.match(e.stderr, /:\d+:\d+: api_key of backend 'up': aws-sm:prod\/not-there: secretsmanager answered HTTP 400 ResourceNotFoundException/);

  const bad = writeConfig(config({
    backends: [{ name: 'up', url: up.url, api_key: 'vault:secret/stratus/up' }],
    models: [{ name: 'quick', targets: [{ backend: 'up', model: 'ok' }] }],
  }));
  const b = await run(BIN, ['check', '--config', bad]).then(() => null, (x) => x);
  assert.equal(b?.code, 2);
  assert.match(b.stderr, /:\d+:\d+: api_key of backend 'up': 'vault:secret\/stratus\/up' needs #FIELD/);
});

test('store.password and store.redis_password come from a store: the gateway reaches a PostgreSQL and a Redis that require them', async () => {
  const { startPostgres, startRedis } = await import('./lib/services.mjs');
  const pg = await startPostgres();
  const redis = await startRedis({ password: 'redis-pass-from-vault' });
  try {
    pg.requirePassword('app', 'pg-pass-from-sm');
    sm('prod/pg', { password: 'pg-pass-from-sm' });
    kv('secret/stratus/redis', { password: 'redis-pass-from-vault' });
    const url = pg.url.replace('stratus@', 'app@');
    const yaml = (pgRef) => config({
      extra: secretsSection() +
        `store:\n  url: "${url}"\n  password: ${pgRef}\n  redis: "${redis.url}"\n` +
        '  redis_password: vault:secret/stratus/redis#password\n',
      backends: [{ name: 'up', url: up.url }],
      models: [{ name: 'quick', targets: [{ backend: 'up', model: 'ok' }] }],
    });
    const gw = await startGateway(yaml('aws-sm:prod/pg#password'), { env: env() });
    try {
      const res = await chat(gw, 'quick');
      assert.equal(res.status, 200);
      await waitFor(() => Number(pg.query("SELECT count(*) FROM requests WHERE model = 'quick'")[0]?.[0]) >= 1,
        { timeout: 5000, what: 'the ledger row in PostgreSQL' });
    } finally { await gw.stop(); }
    assert.equal(gw.exitCode, 0, gw.stderr.slice(-3000));
    noValueIn(gw.stderr, 'the log');

    // A wrong password: the start fails saying so, without either password in the message.
    sm('prod/pg-wrong', { password: 'not-the-pg-password' });
    const file = writeConfig(yaml('aws-sm:prod/pg-wrong#password'));
    const e = await run(BIN, ['serve', '--config', file, '--listen', '127.0.0.1:0'], { env: { ...process.env, ...env() } })
      .then(() => null, (x) => x);
    assert.ok(e, 'a wrong database password must stop the start');
    assert.match(e.stderr, /start_failed.*password authentication failed for user/);
    assert.ok(!e.stderr.includes('not-the-pg-password') && !e.stderr.includes('pg-pass-from-sm'));
  } finally { await redis.close(); await pg.close(); }
});

test('SIGHUP loads the file off the event loop: with the store hanging, requests are answered before the reload gives up', async () => {
  kv('secret/stratus/hang', { api_key: 'sk-hang-1' });
  const yaml = config({
    extra: secretsSection({ refresh: 0 }),
    backends: [{ name: 'up', url: up.url, api_key: 'vault:secret/stratus/hang#api_key' }],
    models: [{ name: 'quick', targets: [{ backend: 'up', model: 'hang-model' }] }],
  });
  const gw = await startGateway(yaml, { env: env() });
  try {
    vault.fault('hang');
    gw.child.kill('SIGHUP');
    await waitFor(() => vault.requests.some((r) => r.path === '/v1/secret/data/stratus/hang' && r.status === null) || vault.count('/v1/secret/data/stratus/hang') > 1,
      { what: 'the reload asking Vault' });
    const res = await chat(gw, 'quick');
    assert.equal(res.status, 200);
    assert.ok(!gw.logs.some((l) => l.event === 'reload_failed'), 'answered while the reload was still waiting for Vault');
    const failed = await gw.waitForLog((l) => l.event === 'reload_failed', 10000 * SCALE);
    assert.match(failed.error, /vault:secret\/stratus\/hang#api_key: Vault unreachable/);
    assert.equal(seenKey('hang-model'), 'Bearer sk-hang-1');
  } finally { vault.fault(null); await gw.stop(); }
  assert.equal(gw.exitCode, 0, gw.stderr.slice(-3000));
});
